"""One module per `softprompt` subcommand; see cli.py for the protocol."""
