from zoo.compare.cli import main

main()
