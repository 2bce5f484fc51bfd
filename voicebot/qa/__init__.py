"""Contact-center quality: QA forms and scorecards on every call, the post-call survey, KPIs.

``form`` loads a pack's weighted form (``intents/qa/<pack>.yaml``), ``criteria`` holds the
rules, ``scorecard`` scores a call (and every call as it finishes), ``survey`` asks the CSAT
question, ``kpis`` computes the contact-center figures, ``cli`` is ``voicebot qa`` and
``voicebot report``. See ``docs/qa.md``.
"""
