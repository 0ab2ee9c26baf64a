import sys

try:
    from hinterval.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python loads the command line: one line, like everywhere else
    print("hinterval: interrupted before training started; nothing was written", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
