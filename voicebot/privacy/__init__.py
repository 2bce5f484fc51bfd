"""Privacy: PII redaction, recording consent, retention and erasure (docs/privacy.md).

- ``redact``: finds card numbers, security codes, verification answers, SSNs and IDs, e-mail
  addresses, account and phone numbers in what callers say, as Whisper writes it, and masks
  them before anything is stored or leaves the process (records, database, packets,
  webhooks, spool, logs, LLM prompts, eval reports).
- ``call``: one call's privacy: redaction in context (the question being answered), digits
  split across turns, the recording muted while a sensitive answer is given, and consent.
- ``storage``: files written 0600 in 0700 folders; erasure and retention purges.
- ``lockout``: verification locked per caller after too many failures a day.
"""
