import sys

try:
    from hinterval.cli import main

    code = main()
except KeyboardInterrupt:  # Ctrl-C while Python loads the command line, or at main's very first instruction
    if "--debug" in sys.argv[1:]:
        raise
    _run = getattr(sys.modules.get("hinterval.cli"), "_RUN", None)  # where a train command was, if it got that far
    print(_run.stopped("interrupted") if _run is not None else
          "hinterval: interrupted before training started; nothing was written", file=sys.stderr)
    code = 130
sys.exit(code)
