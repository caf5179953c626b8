"""`python -m bot`: run the bot (default), or quote, check-config, ledger, jobs."""

from bot.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
