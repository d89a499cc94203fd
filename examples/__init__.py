"""Examples to copy: extending World Models with your own models (see the README's "Extending" section)."""
