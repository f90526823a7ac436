"""Arithmetic coding of integer symbols (constriction's range coder) and the container format."""
