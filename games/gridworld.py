"""
Gridworld: a one-player text maze with walls, holes and a goal, random maps from a seed, and a
breadth-first-search solver that gives the optimal (shortest) path.

A map is text, one row per line:

    A..#      A  the agent (its start)        #  a wall: moving into it is illegal
    .#H.      G  the goal: reaching it wins   H  a hole: stepping in loses
    ...G      .  floor

Moves are up, down, left, right (u/d/l/r also parse). Moving off the map or into a wall is an
illegal move. With slip > 0 a move goes sideways (one of the two perpendicular directions)
with probability slip; a slip into a wall leaves the agent where it is. The reward is the
outcome: +1 on reaching the goal, -1 in a hole, 0 when max_steps run out.

Maps: train and test are 4x4-5x5 (a map is in test iff crc32(text) % 100 < 10, as in
data/tasks.py), ood is 8x8. Every map is solvable and reproducible from its seed.

    $ python -m games.gridworld        # a train map, an ood map and their optimal paths
"""
import random
import zlib
from collections import deque

from games.base import Game

MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
ALIASES = {"u": "up", "d": "down", "l": "left", "r": "right", **{m: m for m in MOVES}}
SIDEWAYS = {"up": ("left", "right"), "down": ("left", "right"),
            "left": ("up", "down"), "right": ("up", "down")}
SIZES = {"train": (4, 5), "test": (4, 5), "ood": (8, 8)}  # (smallest, largest) side length


def parse_map(text):
    """Map text -> (rows without the agent, the agent's (row, col))."""
    rows = text.split("\n")
    r = next(i for i, row in enumerate(rows) if "A" in row)
    return [row.replace("A", ".") for row in rows], (r, rows[r].index("A"))


def step(rows, pos, move):
    """Where `move` leads from pos, or None when off the map or into a wall."""
    r, c = pos[0] + MOVES[move][0], pos[1] + MOVES[move][1]
    if 0 <= r < len(rows) and 0 <= c < len(rows[0]) and rows[r][c] != "#":
        return r, c
    return None


def solve(text):
    """The shortest list of moves from the agent to the goal avoiding holes, or None (BFS)."""
    rows, start = parse_map(text)
    parent = {start: None}  # cell -> (previous cell, move that got here)
    queue = deque([start])
    while queue:
        pos = queue.popleft()
        if rows[pos[0]][pos[1]] == "G":  # walk the parents back to the start
            path = []
            while parent[pos] is not None:
                pos, move = parent[pos]
                path.append(move)
            return path[::-1]
        for move in MOVES:
            nxt = step(rows, pos, move)
            if nxt is not None and nxt not in parent and rows[nxt[0]][nxt[1]] != "H":
                parent[nxt] = (pos, move)
                queue.append(nxt)
    return None


# -----------------------------------------------------------------------------
# Random maps

def random_map(size, rng, walls=0.2, holes=0.1):
    """A solvable size x size map whose shortest path is at least size - 1 moves long."""
    while True:
        cells = [["#" if x < walls else "H" if x < walls + holes else "."
                  for x in (rng.random() for _ in range(size))] for _ in range(size)]
        free = [(r, c) for r in range(size) for c in range(size) if cells[r][c] == "."]
        if len(free) < 2:
            continue
        (ra, ca), (rg, cg) = rng.sample(free, 2)
        cells[ra][ca], cells[rg][cg] = "A", "G"
        text = "\n".join("".join(row) for row in cells)
        path = solve(text)
        if path is not None and len(path) >= size - 1:
            return text


def split_of(text):
    """'test' for the 10% of small maps that hash there, 'train' for the rest, 'ood' for 8x8."""
    if len(text.split("\n")) == SIZES["ood"][0]:
        return "ood"
    return "test" if zlib.crc32(text.encode()) % 100 < 10 else "train"


def draw_map(split, rng):
    """One random map of a split ('train', 'test' or 'ood')."""
    if split not in SIZES:
        raise ValueError(f"unknown split {split!r}: expected train, test or ood")
    while True:
        text = random_map(rng.randint(*SIZES[split]), rng)
        if split_of(text) == split:
            return text


def make_maps(split, n, seed=0):
    """n distinct maps of a split, the same for the same seed."""
    rng, maps = random.Random(f"gridworld/{split}/{seed}"), []
    while len(maps) < n:
        text = draw_map(split, rng)
        if text not in maps:
            maps.append(text)
    return maps


# -----------------------------------------------------------------------------
class Gridworld(Game):
    """One agent, seat 0. Gridworld(split='ood', slip=0.1), or Gridworld(grid=map_text)."""
    name = "gridworld"
    num_players = 1

    def __init__(self, split="train", slip=0.0, grid=None, max_steps=None):
        self.split, self.slip, self.grid, self.max_steps = split, slip, grid, max_steps
        self.reset()

    def reset(self, seed=None):
        """A fixed grid if one was given, else the seed's random map of the split."""
        self.rng = random.Random(seed)  # drives the slips
        text = self.grid or draw_map(self.split, random.Random(f"gridworld/{self.split}/{seed}"))
        self.rows, self.pos = parse_map(text)
        self.steps = 0
        self.limit = self.max_steps or 4 * len(self.rows) * len(self.rows[0])
        return self

    @property
    def to_move(self):
        return 0

    def cell(self):
        return self.rows[self.pos[0]][self.pos[1]]

    def legal_moves(self):
        return [] if self.over() else [m for m in MOVES if step(self.rows, self.pos, m)]

    def play(self, move):
        if self.slip and self.rng.random() < self.slip:  # slip: the move goes sideways
            move = self.rng.choice(SIDEWAYS[move])
        self.pos = step(self.rows, self.pos, move) or self.pos
        self.steps += 1

    def over(self):
        return self.cell() in "GH" or self.steps >= self.limit

    def outcome(self, player=0):
        return {"G": 1, "H": -1}.get(self.cell(), 0)

    def render(self):
        r, c = self.pos
        rows = list(self.rows)
        rows[r] = rows[r][:c] + "A" + rows[r][c + 1:]
        return "\n".join(rows)

    def move_text(self, move):
        return move

    def read_move(self, text):
        """'up' or 'u' (any case, surrounding whitespace aside) and nothing else, as every task
        reads an answer; 'up.' or 'up then left' names no move."""
        return ALIASES.get(text.strip().lower())


def optimal_player(game, rng):
    """The perfect agent: the first move of a shortest path (random legal if none is left)."""
    path = solve(game.render())
    return path[0] if path else rng.choice(game.legal_moves())


if __name__ == "__main__":
    for split in ("train", "ood"):
        text = make_maps(split, 1, seed=0)[0]
        print(f"{split} map:\n{text}\noptimal path: {' '.join(solve(text))}\n")
