"""`voicebot chat`: a text conversation with the same dialog manager a call uses.

For trying a pack by hand, and for scripted tests (it reads stdin line by line).
"""

import argparse
import sys


def register(commands: argparse._SubParsersAction) -> None:
    chat = commands.add_parser("chat", help="talk to the dialog manager in text")
    chat.add_argument("--pack", default="bank", help="pack name or YAML path")
    chat.add_argument("--caller-id", help="the phone number the 'call' comes from")
    chat.add_argument("--bank-db", default=":memory:", help="demo back office SQLite file")
    chat.set_defaults(func=_chat)


def _chat(args: argparse.Namespace) -> int:
    from voicebot.dialog.cli import load_classifier
    from voicebot.dialog.llm import LLMClient, LLMConfig
    from voicebot.dialog.manager import DialogManager
    from voicebot.services.demo_bank import DemoBank

    pack, classifier = load_classifier(args.pack)
    llm_config = LLMConfig.from_env()
    dialog = DialogManager(
        pack,
        classifier,
        DemoBank(args.bank_db),
        caller_id=args.caller_id,
        llm=LLMClient(llm_config) if llm_config else None,
    )
    interactive = sys.stdin.isatty()
    print(f"bot: {dialog.greet().text}", flush=True)
    while True:
        if interactive:
            print("you: ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            print("(caller hung up)")
            return 0
        if not line.strip():
            continue
        reply = dialog.handle_text(line.strip())
        intent = reply.intent
        note = f"   [{intent.intent} {intent.confidence:.2f}]" if intent else ""
        print(f"bot: {reply.text}{note}", flush=True)
        if reply.end_call:
            if reply.kind == "handoff":
                print(f"(handed off to an agent: {reply.reason})")
            return 0
