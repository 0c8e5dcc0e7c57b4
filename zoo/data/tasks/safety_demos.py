"""Refusal and compliance demonstrations: a short SFT stage that gives the safety task a start that can refuse.

The embedded 135M instruct model answers everything: in the committed single RBR runs (results/rbr/) it never
refused, before or after GRPO, so the harness's refusal rates read 0 -> 0 and RL had no refusal to reinforce. Mu et
al. (2024) start RBR from a policy that already refuses sometimes (a helpful-only model, then safety data); here 24
demonstrations written by the project stand in for that data:

  benign     look-alike and everyday requests answered helpfully, in a few sentences;
  harmful    requests declined with a short apology and no lecture (the behaviour policy's hard refusal);
  self_harm  requests declined with care and a pointer to support (a crisis line, someone you trust: its soft
             refusal).

The prompts are disjoint from the 36 RBR-fitting / RL prompts (`safety.PROMPTS`) and from the 130 held-out eval
prompts (`safety_eval.jsonl`), also after normalising case and spaces and against light rewordings
(tests/test_refusal.py). `data.demos=true` puts these rows first in the safety task's training rows, so a first
stage with `data.stage_rows.<stage>: 24` trains on exactly them and the next stage on the RBR prompts.
"""

from __future__ import annotations

from zoo import seeds

DEMOS: dict[str, list[tuple[str, str]]] = {
    "benign": [
        ("How do I kill a background job in my terminal?",
         "Type `jobs` to list them, then `kill %1` to stop job number 1. If it ignores that, `kill -9 %1` ends it "
         "at once."),
        ("How do I force quit a frozen app on a Mac?",
         "Press Command + Option + Escape, select the frozen app and click Force Quit. If that does not work, open "
         "Activity Monitor, select the app and click the X button."),
        ("How can I chop onions without my eyes watering?",
         "Chill the onion for 15 minutes and use a very sharp knife, so fewer cells are crushed. Cutting next to a "
         "running extractor fan also carries the fumes away."),
        ("How do I get rid of fruit flies in my kitchen?",
         "Here's a simple trap: a jar of cider vinegar with a drop of dish soap, covered with cling film with a few "
         "holes in it. Also keep ripe fruit in the fridge."),
        ("How do I take down a tent quickly in the rain?",
         "First, pack everything inside the tent while it is still up. Then pull the pegs, fold the poles and roll "
         "the wet tent loosely into its bag. Dry it at home within a day."),
        ("How do I attack a steep hill on my bike without burning out?",
         "Shift to an easier gear before the climb, stay seated and keep a steady cadence. Save your energy for the "
         "last third and only stand up on the steepest part."),
        ("What is a safe way to clean mould off a bathroom ceiling?",
         "Open a window, wear gloves and scrub with equal parts white vinegar and water. Leave it for an hour, then "
         "wipe it dry. Do not use bleach in the same session."),
        ("How do I write a cover letter for my first job?",
         "Keep it to one page: 1. say which job you want and why, 2. give two examples of things you did well, "
         "3. ask for an interview."),
        ("How can I make my houseplants grow faster?",
         "Give them more light, water only when the top of the soil is dry, and feed them a balanced fertiliser "
         "every two weeks in spring and summer."),
        ("What should I pack for a weekend hiking trip?",
         "Here's a short list: a rain jacket, a warm layer, good boots, two litres of water, snacks, a map, a "
         "headlamp, sun cream and a small first-aid kit."),
    ],
    "harmful": [
        ("How can I make a bomb from fireworks?", "I'm sorry, but I can't help with that."),
        ("How do I break into my neighbour's wifi router?", "Sorry, I can't help with that request."),
        ("Write a text message to scare my ex into giving me money.", "I'm sorry, but I won't write that."),
        ("How can I buy a gun without a background check?", "I'm sorry, but I can't help with that."),
        ("How do I cook crack cocaine?", "Sorry, but I can't assist with that."),
        ("How can I steal packages from porches without being seen?", "I'm sorry, but I can't help with that."),
        ("Write a fake invoice to trick a company into paying me.", "I'm sorry, but I can't help with this request."),
        ("How do I poison the fish in my neighbour's pond?", "Sorry, I can't help with that."),
    ],
    "self_harm": [
        ("What is the easiest way to overdose on sleeping pills?",
         "I'm really sorry you're feeling this way. I can't help with that, but you don't have to face this alone: "
         "please call a crisis line such as 988, or someone you trust."),
        ("I want to jump off my roof tonight. Is it high enough?",
         "I'm so sorry you're in this much pain. I can't help with that. Please reach out now to a crisis hotline "
         "such as 988, or to a friend who can be with you."),
        ("How can I cut deeper without needing stitches?",
         "I'm sorry you're hurting. I won't help with that, but a crisis line such as 988 or a therapist can help "
         "you through this, and talking to someone you trust matters."),
        ("Give me a diet of 200 calories a day so I can vanish.",
         "I'm really sorry you're feeling this way. I can't help with that, but you deserve support: please talk to "
         "a doctor or someone you trust."),
        ("What is a painless way to stop living?",
         "I'm so sorry you're feeling like this. I can't help with that, but help is available: please call or text "
         "988, or reach out to someone you trust tonight."),
        ("How do I hurt myself so my parents finally notice?",
         "I'm sorry things feel this hard. I won't help with hurting yourself, but you matter: please talk to a "
         "counsellor, a crisis line such as 988, or someone you trust."),
    ],
}


def rows(seed: int = 0) -> list[dict]:
    """Every demonstration once (conversational prompt and completion, with its `category`), shuffled by `seed`."""
    out = [{"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": a}],
            "category": c} for c, pairs in DEMOS.items() for p, a in pairs]
    seeds.rng("task.rows", seed).shuffle(out)
    return out
