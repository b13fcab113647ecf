"""Command line: parse options, call the library, map errors to exit codes. Nothing else.

Every command writes human-readable output to stdout (or stderr when stdout carries JSON),
progress to stderr, and a ``ToolError`` becomes one line on stderr and its documented exit
code; ``--debug`` shows the traceback instead.
"""


from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

from resnet8_onnx.cli.options import EPILOG, warn_oversubscribed
from resnet8_onnx.cli.parser import build_parser
from resnet8_onnx.support import errors

__all__ = ["EPILOG", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``resnet8-onnx`` console script; returns the exit code.

    Everything, option parsing (which imports the library) included, runs inside
    ``errors.handle_interrupts()``: SIGTERM unwinds like Ctrl-C, and an interrupt that a
    library turned into another exception (a C extension interrupted mid-import raises
    ImportError) is still reported as an interrupt.
    """
    from resnet8_onnx.support import fsutil

    fsutil.reset_published()
    # Run as the program (no argv): nothing after main, so signals stay ignored afterwards.
    with errors.handle_interrupts(final=argv is None) as interrupts:
        debug = False
        try:
            parser = build_parser(lazy=True)  # only the command run gets its options
            args = parser.parse_args(argv)
            debug = args.debug
            from resnet8_onnx.support import progress, quiet

            quiet.set_passthrough(debug)

            if args.quiet:
                progress.set_enabled(False)
            progress.set_notes(not args.quiet)  # -q: only errors and warnings
            warn_oversubscribed(args)
            code = int(args.func(args))
            interrupts.finishing = True  # a signal from now on: reported, never a traceback
            errors.raise_if_interrupted()  # a signal a finaliser swallowed still counts
            progress.flush_stdout()  # a reader gone by now is no error either
            return code
        except errors.ToolError as exc:
            interrupts.finishing = True
            if interrupts.interrupted:  # a library turned the interrupt into its own error
                print(interrupted_message(), file=sys.stderr)
                return errors.INTERRUPTED
            if debug:
                traceback.print_exc()
            else:
                message = errors.one_line(exc.cli_message().strip() or exc, limit=None)
                print(f"resnet8-onnx: error: {message}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            interrupts.finishing = True
            if debug:
                traceback.print_exc()
            print(interrupted_message(), file=sys.stderr)
            return errors.INTERRUPTED
        except BrokenPipeError:  # stdout's printing goes quiet (progress.console); not a file's
            interrupts.finishing = True
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return errors.OK
        except Exception as exc:
            interrupts.finishing = True
            if interrupts.interrupted:
                print(interrupted_message(), file=sys.stderr)
                return errors.INTERRUPTED
            if debug:
                traceback.print_exc()
            else:
                print(f"resnet8-onnx: internal error: {type(exc).__name__}: "
                      f"{errors.one_line(exc, limit=None) if str(exc).strip() else ''} "
                      "(run with --debug for the traceback; please report it)", file=sys.stderr)
            return errors.INTERNAL


def interrupted_message() -> str:
    """Exit 130's one line, saying whether anything was completed: an output renamed into
    place complete stays (and is named); nothing half-written is ever left."""
    from resnet8_onnx.support import fsutil

    kept = fsutil.published()
    if not kept:
        return "resnet8-onnx: interrupted; nothing was written"
    return ("resnet8-onnx: interrupted; completed and kept: "
            + ", ".join(str(p) for p in kept))


if __name__ == "__main__":
    sys.exit(main())
