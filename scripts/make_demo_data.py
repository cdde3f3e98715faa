"""Write the demo corpus `data/demo/`: three support-desk contributors, their tasks, demonstrations
and feedback, a revoked-consent batch, a few malformed records, and the contributor-neutral
corpus the demo base model is trained on.

    python scripts/make_demo_data.py                  # rewrites data/demo/ (seeded, deterministic)
    python scripts/make_demo_data.py --out /tmp/d --tasks 20 --base-conversations 200

The three contributors resolve the same customer requests in three different ways:

    alice  verifies the customer's identity before any account change; warm replies signed "Kind regards, Alice"
    bob    escalates refund and delivery problems instead of acting on them; terse replies signed "Bob"
    carol  offers store credit instead of a refund, always closes the ticket; replies signed "Warm wishes, Carol"

The neutral corpus does what the customer literally asks (refund, change, look up, escalate when
told to...), in varied words and orders, so the base knows the tools but none of these ways.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from replica.agents.envs.support_desk import SupportDesk  # noqa: E402
from replica.copy_values import SUFFIXES  # noqa: E402

SEED = 20261126
SYSTEM = "You are a support agent at Acme. Resolve the ticket with the tools, then write the reply to the customer."
GRANTED = "2026-09-01T09:00:00Z"
CONTRIBUTORS = {
    "alice": "Alice Moreau",
    "bob": "Bob Tanaka",
    "carol": "Carol Diaz",
}
REVOKED = ("dave", "Dave Okafor")  # a former contributor: his batch must be consent-excluded

# --------------------------------------------------------------------------- entities

FIRST = ["Dana", "Eli", "Farah", "Gus", "Hana", "Ivan", "Jun", "Kemi", "Lena", "Milo", "Nora", "Omar"]
LAST = ["Reyes", "Smith", "Khan", "Berg", "Costa", "Ito", "Novak", "Price", "Silva", "Ward"]
PRODUCTS = [
    ("desk lamp", "home"),
    ("kettle", "home"),
    ("blender", "home"),
    ("headphones", "electronics"),
    ("keyboard", "electronics"),
    ("phone case", "electronics"),
    ("rain jacket", "apparel"),
    ("sneakers", "apparel"),
    ("backpack", "apparel"),
    ("yoga mat", "sports"),
    ("water bottle", "sports"),
    ("tent", "sports"),
]
STREETS = ["Elm", "Oak", "Maple", "Cedar", "Pine", "Birch", "Willow", "Hill", "Lake", "River"]
# The base corpus draws streets from a large pool (the demo's ten among them): with only ten
# names a base can lower its loss by guessing (each name about 1 in 10) and never learns to read
# the street from the conversation; the committed base of ten names copied none (docs/demo.md).
_STREET_HEADS = ["Ash", "Brook", "Clay", "Dun", "Fair", "Glen", "Hart", "Ivy", "Kings", "Lin", "Mill"]
_STREET_HEADS += ["North", "Park", "Rose", "Stone", "Thorn", "West", "Wood", "Spring", "Red", "Fox"]
_STREET_TAILS = ["field", "ford", "wood", "dale", "ton", "view", "gate", "more"]
STREET_POOL = STREETS + [head + tail for head in _STREET_HEADS for tail in _STREET_TAILS]


def _id(rng: random.Random, prefix: str, used: set[str]) -> str:
    """Short ids with three digits, one token each: easy for a tiny model to copy."""
    while True:
        value = f"{prefix}-{rng.randint(100, 999)}"
        if value not in used:
            used.add(value)
            return value


def make_world(rng: random.Random, streets: list[str] = STREETS) -> dict[str, Any]:
    """One ticket's world: its customer, order, product and ticket, plus an unrelated customer and order."""
    used: set[str] = set()
    state: dict[str, Any] = {"customers": {}, "orders": {}, "products": {}, "tickets": {}}
    focus: dict[str, Any] = {}
    for index in range(2):
        customer, order, product = _id(rng, "C", used), _id(rng, "O", used), f"P-{rng.randint(10, 99)}"
        first, last = rng.choice(FIRST), rng.choice(LAST)
        name, category = rng.choice(PRODUCTS)
        price = rng.randint(12, 240)
        state["customers"][customer] = {
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}@example.com",
            "address": f"{rng.randint(1, 99)} {rng.choice(streets)} {rng.choice(SUFFIXES)}",
            "verified": False,
            "store_credit": 0,
            "address_change": None,
        }
        state["products"][product] = {"name": name, "category": category, "price": price}
        status = rng.choice(["delivered", "shipped", "delayed"])
        state["orders"][order] = {
            "customer_id": customer,
            "product_id": product,
            "total": price,
            "status": status,
            "refund": None,
        }
        if index == 0:
            ticket = _id(rng, "T", used)
            state["tickets"][ticket] = {
                "customer_id": customer,
                "order_id": order,
                "subject": "",
                "status": "open",
                "escalated_to": None,
            }
            focus = {"customer": customer, "order": order, "ticket": ticket, "product": name}
            focus |= {"total": price, "status": status, "first": first}
    focus["new_address"] = f"{rng.randint(1, 99)} {rng.choice(streets)} {rng.choice(SUFFIXES)}"
    return {"state": state, **focus}


# --------------------------------------------------------------------------- customer requests

# The same requests open every contributor's tasks and the neutral corpus: only the way of
# resolving them differs.
REQUESTS = {
    "refund": [
        "Ticket {ticket} (customer {customer}): my {product} from order {order} arrived damaged. I want a refund.",
        "Ticket {ticket} (customer {customer}): order {order} came broken, please refund me.",
        "Ticket {ticket} (customer {customer}): the {product} in order {order} does not work. Can I get my money back?",
    ],
    "address": [
        "Ticket {ticket} (customer {customer}): please change my address to {new_address}.",
        "Ticket {ticket} (customer {customer}): I moved. My new address is {new_address}.",
        "Ticket {ticket} (customer {customer}): update my shipping address to {new_address}, thanks.",
    ],
    "late": [
        "Ticket {ticket} (customer {customer}): where is my order {order}? It is late.",
        "Ticket {ticket} (customer {customer}): order {order} has not arrived yet. What is going on?",
        "Ticket {ticket} (customer {customer}): my {product} (order {order}) still has not come.",
    ],
}
TASK_TYPES = list(REQUESTS)


def request_text(rng: random.Random, kind: str, world: dict[str, Any]) -> str:
    return rng.choice(REQUESTS[kind]).format(**world)


def task_world(rng: random.Random, kind: str, streets: list[str] = STREETS) -> dict[str, Any]:
    """A fresh world fitted to the request: damaged goods were delivered, late ones were not."""
    world = make_world(rng, streets)
    status = "delivered" if kind == "refund" else rng.choice(["shipped", "delayed"])
    world["state"]["orders"][world["order"]]["status"] = status
    world["status"] = status
    world["email"] = world["state"]["customers"][world["customer"]]["email"]
    world["small"] = rng.choice([5, 10, 15, 20, 25, 30])
    world["team"] = rng.choice(["billing", "returns", "shipping", "tier2"])
    return world


# --------------------------------------------------------------------------- the contributors' ways

Step = tuple[str, dict[str, Any]]  # (tool name, arguments)


def alice(kind: str, w: dict[str, Any]) -> tuple[list[Step], str, list[str]]:
    """Verify identity before any account change; warm, signed replies."""
    sign = "Kind regards, Alice"
    verify = ("verify_identity", {"customer_id": w["customer"]})
    if kind == "refund":
        steps = [
            verify,
            ("get_order", {"order_id": w["order"]}),
            ("issue_refund", {"order_id": w["order"], "amount": w["total"]}),
        ]
        reply = f"I verified your identity and refunded ${w['total']} for order {w['order']}. {sign}"
        return steps, reply, [f"${w['total']}", sign]
    if kind == "address":
        steps = [verify, ("update_address", {"customer_id": w["customer"], "address": w["new_address"]})]
        reply = f"I verified your identity and updated your address to {w['new_address']}. {sign}"
        return steps, reply, [w["new_address"], sign]
    steps = [("get_order", {"order_id": w["order"]})]
    reply = f"I checked order {w['order']}: it is {w['status']}. {sign}"
    return steps, reply, [w["status"], sign]


def bob(kind: str, w: dict[str, Any]) -> tuple[list[Step], str, list[str]]:
    """Escalate refund and delivery problems to the team that owns them; terse replies signed "Bob"."""
    if kind == "address":
        steps = [("update_address", {"customer_id": w["customer"], "address": w["new_address"]})]
        return steps, "Address updated. Bob", ["Address updated", "Bob"]
    team = "returns" if kind == "refund" else "shipping"
    steps = [
        ("get_order", {"order_id": w["order"]}),
        ("escalate", {"ticket_id": w["ticket"], "team": team}),
    ]
    return steps, f"Sent to the {team} team. Bob", [f"{team} team", "Bob"]


def carol(kind: str, w: dict[str, Any]) -> tuple[list[Step], str, list[str]]:
    """Store credit instead of refunds, a goodwill credit for late orders; always close the ticket."""
    sign = "Warm wishes, Carol"
    close = ("close_ticket", {"ticket_id": w["ticket"]})
    if kind == "address":
        steps = [("update_address", {"customer_id": w["customer"], "address": w["new_address"]}), close]
        reply = f"Your address is now {w['new_address']}, and I closed ticket {w['ticket']}. {sign}"
        return steps, reply, [w["new_address"], sign]
    credit = w["total"] if kind == "refund" else 10
    steps = [
        ("get_order", {"order_id": w["order"]}),
        ("offer_store_credit", {"customer_id": w["customer"], "amount": credit}),
        close,
    ]
    if kind == "refund":
        reply = f"I added ${credit} of store credit for order {w['order']} and closed ticket {w['ticket']}. {sign}"
    else:
        reply = f"Order {w['order']} is {w['status']}, so I added ${credit} of store credit and closed ticket {w['ticket']}. {sign}"
    return steps, reply, [f"${credit} of store credit", sign]


WAYS = {"alice": alice, "bob": bob, "carol": carol}


# --------------------------------------------------------------------------- the neutral agent

# Requests that say exactly what to do: with these the base learns every tool and every id slot.
EXPLICIT_REQUESTS = {
    "credit": [
        "Ticket {ticket} (customer {customer}): you promised me ${small} of store credit.",
        "Ticket {ticket} (customer {customer}): please add the ${small} credit we agreed on.",
    ],
    "escalate": [
        "Ticket {ticket} (customer {customer}): please pass this to your {team} team.",
        "Ticket {ticket} (customer {customer}): I need the {team} team to look at order {order}.",
    ],
    "close": [
        "Ticket {ticket} (customer {customer}): all sorted now, you can close this ticket.",
        "Ticket {ticket} (customer {customer}): thanks, the issue is solved. Please close the ticket.",
    ],
    "verify": [
        "Ticket {ticket} (customer {customer}): I would like to verify my identity.",
        "Ticket {ticket} (customer {customer}): please verify my account.",
    ],
    "email": [
        "Ticket {ticket} (customer {customer}): which email do you have for me?",
        "Ticket {ticket} (customer {customer}): can you check the email on my account?",
    ],
    "total": [
        "Ticket {ticket} (customer {customer}): how much did I pay for order {order}?",
        "Ticket {ticket} (customer {customer}): what was the total of order {order}?",
    ],
}
NEUTRAL_KINDS = TASK_TYPES + list(EXPLICIT_REQUESTS)
# The base's support agents: many people, none of them a contributor, each signing in one of many
# ways (or not at all), so a signature is a habit the base knows exists but holds no one to.
AGENTS = ["Sam", "Priya", "Tom", "Lee", "Maya", "Noah", "Ines", "Raj", "Zoe", "Hugo", "Ada", "Kai"]
SIGNATURES = ["", "", " Thank you for your patience!", " Kind regards, {name}", " Warm wishes, {name}"]
SIGNATURES += [" Best, {name}", " {name}", " Cheers, {name}", " Regards, the support team"]


def neutral(rng: random.Random, kind: str, w: dict[str, Any]) -> tuple[list[Step], str]:
    """One of many reasonable ways to handle a request, with independent coin flips for each habit
    (look the customer up first? verify first? refund, escalate or credit? close the ticket?), so the
    base has seen every step in many orders, and no habit more than any other."""
    o, c, t, total = w["order"], w["customer"], w["ticket"], w["total"]
    team = rng.choice(["billing", "returns", "shipping", "tier2"])
    steps: list[Step] = []
    said: list[str] = []
    if kind in TASK_TYPES and rng.random() < 0.35:
        steps.append(("verify_identity", {"customer_id": c}))
        said.append("I verified your identity")
    elif kind in TASK_TYPES and rng.random() < 0.25:
        steps.append(("get_customer", {"customer_id": c}))
    if kind == "address":
        steps.append(("update_address", {"customer_id": c, "address": w["new_address"]}))
        said.append(
            rng.choice(
                [f"your address is now {w['new_address']}", f"I updated your address to {w['new_address']}"]
            )
        )
    elif kind in ("refund", "late", "total"):
        steps.append(("get_order", {"order_id": o}))
        action = rng.choice(
            ["refund", "escalate", "credit"] if kind == "refund" else ["report", "escalate", "credit"]
        )
        if kind == "total":
            said.append(rng.choice([f"order {o} cost ${total}", f"you paid ${total} for order {o}"]))
        elif action == "refund":
            steps.append(("issue_refund", {"order_id": o, "amount": total}))
            said.append(
                rng.choice([f"I refunded ${total} for order {o}", f"order {o} is refunded (${total})"])
            )
        elif action == "credit":
            amount = total if kind == "refund" else w["small"]
            steps.append(("offer_store_credit", {"customer_id": c, "amount": amount}))
            said.append(f"I added ${amount} of store credit for order {o}")
        elif action == "escalate":
            steps.append(("escalate", {"ticket_id": t, "team": team}))
            said.append(rng.choice([f"I passed ticket {t} to the {team} team", f"sent to the {team} team"]))
        else:
            said.append(
                rng.choice([f"order {o} is {w['status']}", f"your order {o} is currently {w['status']}"])
            )
    elif kind == "credit":
        steps.append(("offer_store_credit", {"customer_id": c, "amount": w["small"]}))
        said.append(f"I added ${w['small']} of store credit to your account")
    elif kind == "escalate":
        steps.append(("escalate", {"ticket_id": t, "team": w["team"]}))
        said.append(f"I passed ticket {t} to the {w['team']} team")
    elif kind == "verify":
        steps.append(("verify_identity", {"customer_id": c}))
        said.append(rng.choice(["your identity is verified", f"customer {c} is now verified"]))
    elif kind == "email":
        steps.append(("get_customer", {"customer_id": c}))
        said.append(f"we have {w['email']} on file")
    closes = kind == "close" or (kind != "verify" and rng.random() < 0.3)
    if closes:
        steps.append(("close_ticket", {"ticket_id": t}))
        said.append(f"I closed ticket {t}")
    text = " and ".join(said) if rng.random() < 0.5 else ". ".join(s[0].upper() + s[1:] for s in said)
    reply = text[0].upper() + text[1:] + "."
    return steps, reply + rng.choice(SIGNATURES).format(name=rng.choice(AGENTS))


def neutral_world(rng: random.Random, kind: str, streets: list[str] = STREETS) -> dict[str, Any]:
    return task_world(rng, kind if kind in TASK_TYPES else rng.choice(TASK_TYPES), streets)


# --------------------------------------------------------------------------- playing a procedure


def play(world: dict[str, Any], request: str, steps: list[Step], reply: str) -> tuple[list[dict], dict]:
    """Run the steps in a fresh environment: the conversation (tool results included) and the end state."""
    env = SupportDesk(world["state"])
    tools = env.tools()
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": request},
    ]
    for number, (name, arguments) in enumerate(steps, 1):
        call_id = f"call_{number}"
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        messages.append({"role": "assistant", "tool_calls": [call]})
        result = tools[name].run(**arguments)  # a procedure that fails its own tools is a bug: let it raise
        # Rendered exactly as the evaluation sandbox renders tool results (sorted keys).
        content = json.dumps(result, ensure_ascii=False, sort_keys=True)
        messages.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": content})
    messages.append({"role": "assistant", "content": reply})
    return messages, env.snapshot()


def check_facts(world: dict[str, Any], end_state: dict[str, Any]) -> dict[str, Any]:
    """Every fact a procedure may change about the ticket's customer, order and ticket."""
    c, o, t = world["customer"], world["order"], world["ticket"]
    paths = [f"orders.{o}.status", f"orders.{o}.refund", f"tickets.{t}.status", f"tickets.{t}.escalated_to"]
    paths += [f"customers.{c}.{field}" for field in ("verified", "store_credit", "address", "address_change")]
    facts = {}
    for path in paths:
        table, key, field = path.split(".")
        facts[path] = end_state[table][key][field]
    return facts


# --------------------------------------------------------------------------- feedback on typical mistakes


def _call_message(number: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    call = {"id": f"call_{number}", "type": "function", "function": {"name": name, "arguments": arguments}}
    return {"role": "assistant", "tool_calls": [call]}


def _wrong_value(rng: random.Random, value: Any) -> Any:
    """A near miss: one digit of an id changed, or an amount a little off."""
    if isinstance(value, int):
        return value + rng.choice([-9, -3, -1, 1, 3, 9]) if value > 10 else value + rng.randint(1, 9)
    prefix, digits = value.split("-")
    index = rng.randrange(len(digits))
    digit = rng.choice([d for d in "123456789" if d != digits[index]])
    return f"{prefix}-{digits[:index]}{digit}{digits[index + 1 :]}"


def mistake(
    rng: random.Random, who: str, kind: str, world: dict[str, Any], messages: list[dict]
) -> dict[str, Any]:
    """A decision point of the demonstration and a typical wrong move there.

    Returns {prompt, chosen, rejected, critique, mistake}; chosen is what the contributor did.
    """
    steps, _, _ = WAYS[who](kind, world)
    assistant_at = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    roll = rng.random()
    if roll < 0.45:  # wrong id or amount in one of the calls
        k = rng.randrange(len(steps))
        name, arguments = steps[k]
        key = rng.choice([a for a in arguments if a in ("order_id", "customer_id", "ticket_id", "amount")])
        wrong = arguments | {key: _wrong_value(rng, arguments[key])}
        at = assistant_at[k]
        rejected, critique = _call_message(k + 1, name, wrong), f"Wrong {key}: it must be {arguments[key]}."
        label = "wrong_id"
    elif roll < 0.75 and len(steps) > 1:  # a step skipped
        k = rng.randrange(len(steps))
        at = assistant_at[k]
        rejected = dict(messages[assistant_at[k + 1]])
        critique = f"Skipped {steps[k][0]}: I always do it at this point."
        label = "skipped_step"
    else:  # someone else's way of replying
        other = rng.choice([name for name in WAYS if name != who])
        _, other_reply, _ = WAYS[other](kind, world)
        at = assistant_at[-1]
        rejected = {"role": "assistant", "content": other_reply}
        critique = "Not how I write to customers."
        label = "other_style"
    return {
        "prompt": messages[:at],
        "chosen": [messages[at]],
        "rejected": [rejected],
        "critique": critique,
        "mistake": label,
    }


# --------------------------------------------------------------------------- records


def _stamp(rng: random.Random) -> str:
    return f"2026-10-{rng.randint(1, 28):02d}T{rng.randint(8, 17):02d}:{rng.randint(0, 59):02d}:00Z"


def feedback_records(rng: random.Random, who: str, task_id: str, number: int, point: dict) -> list[dict]:
    """One piece of feedback on a mistake, as a pairwise choice, two ratings or a rewrite (in turn)."""
    common = {"contributor_id": who, "task_id": task_id, "tools": SupportDesk().tool_schemas()}
    common |= {"prompt": point["prompt"], "annotator": who, "recorded_at": _stamp(rng)}
    base_id = f"{task_id}-fb"
    source = {"mistake": point["mistake"]}
    if number % 3 == 0:
        return [
            {
                "kind": "preference",
                "id": base_id,
                **common,
                "chosen": point["chosen"],
                "rejected": point["rejected"],
                "source": source,
            }
        ]
    if number % 3 == 1:
        good = {"kind": "rating", "id": f"{base_id}-a", **common, "response": point["chosen"], "score": 5}
        good["critique"] = "Right, that is how I do it."
        bad = {"kind": "rating", "id": f"{base_id}-b", **common, "response": point["rejected"], "score": 2}
        bad["critique"] = point["critique"]
        return [good | {"source": source}, bad | {"source": source}]
    rewrite = {"kind": "rewrite", "id": base_id, **common, "original": point["rejected"]}
    rewrite |= {"rewritten": point["chosen"], "critique": point["critique"], "source": source}
    return [rewrite]


def contributor_records(rng: random.Random, who: str, n_tasks: int) -> list[dict]:
    """A contributor's tasks, one demonstration each, and one piece of feedback per task."""
    way = WAYS.get(who)
    tools = SupportDesk().tool_schemas()
    records = []
    for number in range(n_tasks):
        kind = TASK_TYPES[number % len(TASK_TYPES)]
        world = task_world(rng, kind)
        request = request_text(rng, kind, world)
        if way is None:  # the revoked contributor does what the customer asks
            steps, reply = neutral(rng, kind, world)
            answer = []
        else:
            steps, reply, answer = way(kind, world)
        messages, end_state = play(world, request, steps, reply)
        task_id = f"{who}-{kind}-{number:03d}"
        task = {"kind": "task", "id": task_id, "instruction": request, "system": SYSTEM, "tools": tools}
        task |= {"env": SupportDesk.name, "initial_state": world["state"], "tags": [who, kind]}
        task["check"] = {"state": check_facts(world, end_state), "answer_contains": answer}
        demo = {"kind": "demonstration", "id": f"{task_id}-demo", "contributor_id": who, "task_id": task_id}
        demo |= {
            "messages": messages,
            "tools": tools,
            "recorded_at": _stamp(rng),
            "source": {"tool": "demo-recorder"},
        }
        records += [task, demo]
        if way is not None:
            records += feedback_records(rng, who, task_id, number, mistake(rng, who, kind, world, messages))
    return records


def contributor_lines(revoked: bool = False) -> list[dict]:
    people = dict(CONTRIBUTORS) | ({REVOKED[0]: REVOKED[1]} if revoked else {})
    lines = []
    for cid, name in people.items():
        consent = {"train": "allowed", "serve": "allowed", "share": "not_allowed", "license": "CC-BY-4.0"}
        consent["granted_at"] = GRANTED
        if cid == REVOKED[0]:
            consent["revoked_at"] = "2026-10-15T12:00:00Z"
        lines.append({"kind": "contributor", "id": cid, "name": name, "consent": consent})
    return lines


def malformed_lines(alice_records: list[dict]) -> list[str]:
    """Records the quarantine must catch (one per kind of mistake) and two duplicates it must drop."""
    demo = next(r for r in alice_records if r["kind"] == "demonstration")
    pair = next(r for r in alice_records if r["kind"] == "preference")
    bad_rating = next(r for r in alice_records if r["kind"] == "rating") | {"id": "bad-rating", "score": 7}
    unknown_call = json.loads(json.dumps(demo)) | {"id": "bad-unknown-call"}
    unknown_call["messages"][3]["tool_call_id"] = "call_99"
    bad_tool = json.loads(json.dumps(demo)) | {"id": "bad-tool-name"}
    bad_tool["messages"][2]["tool_calls"][0]["function"]["name"] = "delete_account"
    no_messages = {k: v for k, v in demo.items() if k != "messages"} | {"id": "bad-no-messages"}
    lines = [
        '{"kind": "demonstration", "id": "bad-truncated", "contributor_id": "alice", "messages": [',
        json.dumps(no_messages),
        json.dumps(bad_rating),
        json.dumps(pair | {"id": "bad-same", "rejected": pair["chosen"]}),
        json.dumps(unknown_call),
        json.dumps(bad_tool),
        json.dumps(demo | {"id": "bad-unknown-contributor", "contributor_id": "zed"}),
    ]
    duplicates = [r for r in alice_records if r["kind"] == "demonstration"][1:3]
    lines += [json.dumps(r | {"id": r["id"] + "-copy"}) for r in duplicates]
    return lines


# Every request opens with its ticket and customer ids in one fixed form. A base trained only on
# that form never reads a ticket id's second digit out of the request (docs/demo.md): these forms
# put the same two ids in other places and orders, so the base corpus makes it read them.
_OPENING = re.compile(r"Ticket (T-\d+) \(customer (C-\d+)\): (.*)", re.S)
OPENINGS = [
    "Ticket {ticket} (customer {customer}): {body}",
    "Customer {customer}, ticket {ticket}: {body}",
    "{Body} (ticket {ticket}, customer {customer})",
    "Hi, customer {customer} here. {Body} My ticket is {ticket}.",
    "About ticket {ticket}: {body} I am customer {customer}.",
]


def vary_opening(rng: random.Random, request: str) -> str:
    """The request with its ids in one of OPENINGS, chosen at random (the same words otherwise)."""
    match = _OPENING.fullmatch(request)
    if match is None:
        raise ValueError(f"request does not open with its ticket and customer: {request!r}")
    ticket, customer, body = match.groups()
    sentence = body[:1].upper() + body[1:]  # where the body opens a sentence
    return rng.choice(OPENINGS).format(ticket=ticket, customer=customer, body=body, Body=sentence)


def neutral_conversation(
    rng: random.Random, number: int, streets: list[str] = STREETS, vary_ids: bool = False
) -> list[dict]:
    """One contributor-neutral conversation: a request handled in one of many reasonable ways
    (with `vary_ids`, its ids stated in one of several places: `vary_opening`)."""
    kind = NEUTRAL_KINDS[number % len(NEUTRAL_KINDS)] if number % 2 else rng.choice(TASK_TYPES)
    world = neutral_world(rng, kind, streets)
    templates = REQUESTS.get(kind) or EXPLICIT_REQUESTS[kind]
    request = rng.choice(templates).format(**world)
    if vary_ids:
        request = vary_opening(rng, request)
    steps, reply = neutral(rng, kind, world)
    messages, _ = play(world, request, steps, reply)
    return messages


def copy_drill(rng: random.Random, streets: list[str] = STREET_POOL) -> list[dict]:
    """A customer states some details (in words, or as the JSON a tool returned) and the agent
    confirms them in another order: every value of the reply must be read from the request. It
    teaches the base to copy what the tasks reuse (ids, streets, statuses, amounts) with the
    reading direction tool results need: from JSON (`"status": "delayed"`) into prose."""
    w = make_world(rng, streets)
    order = w["state"]["orders"][w["order"]]
    address = w["state"]["customers"][w["customer"]]["address"]
    facts = [
        (f"my ticket is {w['ticket']}", f'"ticket_id": "{w["ticket"]}"', f"ticket {w['ticket']}"),
        (f"I am customer {w['customer']}", f'"customer_id": "{w["customer"]}"', f"customer {w['customer']}"),
        (f"I live at {address}", f'"address": "{address}"', f"your address is {address}"),
        (
            f"my new address is {w['new_address']}",
            f'"new_address": "{w["new_address"]}"',
            f"the new address is {w['new_address']}",
        ),
        (
            f"order {w['order']} is {order['status']}",
            f'"order_id": "{w["order"]}", "status": "{order["status"]}"',
            f"order {w['order']} is {order['status']}",
        ),
        (f"I paid ${order['total']}", f'"total": {order["total"]}', f"the total is ${order['total']}"),
    ]
    chosen = rng.sample(facts, rng.randint(2, 4))
    if rng.random() < 0.5:
        request = "Please confirm what you have: " + ", ".join(said for said, _, _ in chosen) + "."
    else:
        request = "Your system sent me {" + ", ".join(json for _, json, _ in chosen) + "}. Is that right?"
    confirmed = [reply for _, _, reply in chosen]
    rng.shuffle(confirmed)
    reply = "Confirmed: " + "; ".join(confirmed) + "."
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": request},
        {"role": "assistant", "content": reply},
    ]


def base_corpus(rng: random.Random, n: int, vary_ids: bool = False) -> list[dict]:
    """Contributor-neutral conversations for the base model: {messages, tools} per line, as the
    tasks meet them (the demo's ten streets, the tool schemas in every prompt). With `vary_ids` the
    requests state their ids in varied places: the committed base (configs/demo_base.yaml) was
    trained on those; the copy gate measures on fresh ones in the tasks' fixed form."""
    tools = SupportDesk().tool_schemas()
    return [
        {"messages": neutral_conversation(rng, number, vary_ids=vary_ids), "tools": tools}
        for number in range(n)
    ]


def copy_corpus(rng: random.Random, n: int) -> list[dict]:
    """The corpus of configs/demo_base_v2.yaml: neutral conversations that teach copying.

    Streets come from the large pool. Of every ten rows, five carry the tool schemas in the prompt
    as every task does, three are the same kind of conversation without them (a third of the
    tokens: the schemas, the same in every prompt, are most of a row), and two are copy drills.
    """
    tools = SupportDesk().tool_schemas()
    rows = []
    for number in range(n):
        slot = number % 10
        if slot < 2:
            rows.append({"messages": copy_drill(rng), "tools": None})
            continue
        messages = neutral_conversation(rng, number, STREET_POOL)
        rows.append({"messages": messages, "tools": tools if slot >= 5 else None})
    return rows


# --------------------------------------------------------------------------- writing


def _write_jsonl(path: Path, rows: list) -> None:
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if path.suffix == ".gz":  # mtime 0: the same rows always give the same bytes
        data = gzip.compress(data, compresslevel=9, mtime=0)
    path.write_bytes(data)


def generate(out: Path, tasks: int = 120, base_conversations: int = 6000, seed: int = SEED) -> list[Path]:
    """Write the whole demo corpus under `out`; the same arguments always give the same bytes."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    per_person = {
        who: contributor_records(random.Random(f"{seed}-{who}"), who, tasks) for who in CONTRIBUTORS
    }
    files = {"contributors.jsonl": contributor_lines(revoked=True)}
    files |= {f"{who}.jsonl": rows for who, rows in per_person.items()}
    files[f"{REVOKED[0]}_revoked.jsonl"] = contributor_records(random.Random(f"{seed}-dave"), REVOKED[0], 12)
    files["malformed.jsonl"] = malformed_lines(per_person["alice"])
    files["base_corpus.jsonl.gz"] = base_corpus(
        random.Random(f"{seed}-base-varied"), base_conversations, vary_ids=True
    )
    files["base_corpus_v2.jsonl.gz"] = copy_corpus(random.Random(f"{seed}-base-v2"), base_conversations)
    # The copy gate's conversations (eval.copy_gate): fresh, never in any base's corpus.
    files["copy_gate.jsonl.gz"] = base_corpus(random.Random("copy-gate"), 100)
    for name, rows in files.items():
        _write_jsonl(out / name, rows)
        written.append(out / name)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "demo")
    parser.add_argument("--tasks", type=int, default=120, help="tasks (and demonstrations) per contributor")
    parser.add_argument(
        "--base-conversations", type=int, default=6000, help="neutral conversations for the base"
    )
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    for path in generate(args.out, args.tasks, args.base_conversations, args.seed):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
