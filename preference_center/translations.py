"""``flask translations extract|update|compile``, also runnable as ``python -m preference_center.translations``.

The commands need no application (compiling the catalogues must work before any setting
exists, e.g. in ``make test`` on a fresh clone), so they are a plain click group that the Flask
CLI mounts as well. Options come from ``setup.cfg`` so there is one source of truth.
"""

from __future__ import annotations

from configparser import ConfigParser

import click
from babel.messages.frontend import CommandLineInterface

from . import config

cli = click.Group("translations", help="Extract, update and compile the catalogues.")


def _babel_options(section: str) -> dict[str, str]:
    parser = ConfigParser()
    parser.read(config.PROJECT_ROOT / "setup.cfg")
    return dict(parser[section])


def _pybabel(*args: str) -> None:
    CommandLineInterface().run(["pybabel", "-q", *args])


@cli.command("extract")
def translations_extract() -> None:
    """Write translations/messages.pot from the code and templates (setup.cfg settings)."""
    options = _babel_options("extract_messages")
    root = config.PROJECT_ROOT
    keywords = []
    for keyword in options["keywords"].split():
        keywords += ["-k", keyword]
    _pybabel(
        "extract",
        "-F",
        str(root / options["mapping_file"]),
        *keywords,
        "-w",
        options["width"],
        "--sort-by-file",
        "--project",
        options["project"],
        "--copyright-holder",
        options["copyright_holder"],
        "--msgid-bugs-address",
        options["msgid_bugs_address"],
        "-o",
        str(root / options["output_file"]),
        str(root),
    )
    click.echo(f"Extracted {options['output_file']}.")


@cli.command("update")
def translations_update() -> None:
    """Extract, then merge new strings into the nl and fr catalogues."""
    translations_extract.callback()  # type: ignore[misc]
    options = _babel_options("update_catalog")
    root = config.PROJECT_ROOT
    _pybabel(
        "update",
        "-i",
        str(root / options["input_file"]),
        "-d",
        str(root / options["output_dir"]),
        "-w",
        _babel_options("extract_messages")["width"],
        "--no-fuzzy-matching",
    )
    click.echo("Updated the nl and fr catalogues; translate the new entries.")


@cli.command("compile")
def translations_compile() -> None:
    """Compile the .po catalogues to .mo (done by `make`; the .mo files are not committed)."""
    options = _babel_options("compile_catalog")
    _pybabel("compile", "-d", str(config.PROJECT_ROOT / options["directory"]), "--statistics")
    click.echo("Compiled the catalogues.")


if __name__ == "__main__":
    cli()
