"""Other codebases' models and results, read and written in trellic's terms."""
