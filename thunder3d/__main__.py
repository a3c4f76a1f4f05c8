"""``python -m thunder3d`` runs the command-line tool."""

from thunder3d.cli import run

run()
