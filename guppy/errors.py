"""One exception type for a user's mistake.

Anything raised as `GuppyError` is something the user can fix (a bad file, a missing
run, a wrong flag). The CLI prints its message, one problem per line, and exits with
code 2 and no traceback. Anything else is a bug and keeps its traceback.
"""


class GuppyError(Exception):
    def __init__(self, *problems: str):
        self.problems = [p for p in problems if p]
        super().__init__("\n".join(self.problems))
