"""The persona spec: its schema (persona), finding and loading it (personas), the style rules (style), and
the language helpers they share (language). Torch-free; imports only the core."""
