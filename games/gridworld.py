"""
Gridworld: a one-player text maze with walls, holes and a goal, random maps from a seed, and a
breadth-first-search solver that gives the optimal (shortest) path.

A map is text, one row per line:

    A..#      A  the agent (its start)        #  a wall: moving into it is illegal
    .#H.      G  the goal: reaching it wins   H  a hole: stepping in loses
    ...G      .  floor                        +  floor the agent has left once (its trail)
              a  the agent on its trail       *  floor it has left twice or more

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
    """Map text -> (rows without the agent, the agent's (row, col)); under an 'a' is trail."""
    rows = text.split("\n")
    pos = next((r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch in "Aa")
    return [row.replace("A", ".").replace("a", "+") for row in rows], pos


def left_behind(cell):
    """The mark the agent leaves on a cell it walks off: '+' the first time, '*' after that.
    Two counts are what a walker that sees only the cells around it needs to leave a pocket it
    goes back and forth in: go where it has been least."""
    return "+" if cell == "." else "*"


def agent_on(cell):
    """The agent's letter on a cell: 'a' on its trail, so the text alone says what the cell
    becomes when the agent leaves it ('*')."""
    return "a" if cell in "+*" else "A"


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
        nxt = step(self.rows, self.pos, move) or self.pos
        if nxt != self.pos:
            self.rows = put(self.rows, self.pos, left_behind(self.cell()))
        self.pos = nxt
        self.steps += 1

    def over(self):
        return self.cell() in "GH" or self.steps >= self.limit

    def outcome(self, player=0):
        return {"G": 1, "H": -1}.get(self.cell(), 0)

    def render(self):
        return "\n".join(put(self.rows, self.pos, agent_on(self.cell())))

    def move_text(self, move):
        return move

    def read_move(self, text):
        return read_move(text)


def read_move(text):
    """'up' or 'u' (any case, surrounding whitespace aside) and nothing else, as every task reads
    an answer; 'up.' or 'up then left' names no move."""
    return ALIASES.get(text.strip().lower()) if isinstance(text, str) else None


def optimal_player(game, rng):
    """The perfect agent: the first move of a shortest path (random legal if none is left)."""
    path = solve(game.render())
    return path[0] if path else rng.choice(game.legal_moves())


# -----------------------------------------------------------------------------
# What train_games.py needs to learn the game by Algorithm 2 (games/tictactoe.py has the same).
# A board is a map's text with the agent on it (Gridworld.render()) and '+' / '*' on the cells it
# has left behind once / more: its trail, the only memory of a walker that reads one board at a
# time, so it can learn not to go round in circles.

PLAYERS = 1               # one seat: TD discounts forward (train_games.td_targets)
MOVE_TOKENS = 2           # a move is one character, then <|eos|>
RADIUS = 2                # the agent sees the 5 x 5 cells around it: on a 4x4-5x5 map most of a
                          #   7 x 7 view is off the map, read as wall, and on 8x8 most of it is
                          #   floor, a view training never showed (results/README.md, Gridworld)
VIEW = f"ego {2 * RADIUS + 1}x{2 * RADIUS + 1}, trail +*"   # the checkpoint's board_view (play.py)
EVAL_MAPS = 200           # maps per split at evaluation
DEFAULTS = dict(max_iters=300, batch_size=16, gamma=0.9,   # train_games.py's budget, discount
                self_play="sampled", critic_target="return")   # and §5.4
RAN_OUT = -1              # a walk that runs out of moves has lost, as in a hole: scored 0, going
                          #   round in circles would be safer than risking a hole near the goal
REVISIT_COST = 0.1        # a move back onto the trail earns -REVISIT_COST at once for each time
                          #   the walker has left that cell (TRAIL; move_reward), where running
                          #   out of moves costs only after the last one, a loss discount 0.9
                          #   makes worth 1.5% forty moves before; a shortest path never revisits
                          #   a cell, so the optimal walk pays nothing
TRAIL = {"+": 1, "*": 2}  # times a mark says the walker has left a cell, counted to two
EXPLORE = 0.5             # a training walk starts after 0..EXPLORE x cells random safe moves
                          #   (starts: exploring starts, as tic-tac-toe's openings): the 8x8 walks
                          #   that fail go back and forth in a pocket their trail fills, boards a
                          #   walk from a fresh start seldom brings on a 4x4-5x5 map
COLUMNS = [(f"{k}_{split}", f"{name} {split}", fmt) for split in ("test", "ood")
           for k, name, fmt in (("success", "success", "{:.1%}"), ("path", "path / BFS", "{:.2f}"),
                                ("illegal", "illegal", "{:.1%}"), ("ran_out", "ran out", "{:.1%}"))]


def ego_prompt(board):
    """What the agent sees: the (2 RADIUS + 1)^2 cells around it, off the map read as wall, rows
    joined by '|', then where the goal lies ('dl': down and left, '-' when level). The text has
    the same shape on every map, so a lobe trained on 4x4-5x5 maps reads an 8x8 one as it read
    them; the whole map as text would put a cell's neighbours above and below at distances in
    the prompt that training never showed."""
    rows, (r, c) = parse_map(board)
    gr, gc = next((i, row.index("G")) for i, row in enumerate(rows) if "G" in row)
    view = ["".join(rows[i][j] if 0 <= i < len(rows) and 0 <= j < len(rows[0]) else "#"
                    for j in range(c - RADIUS, c + RADIUS + 1))
            for i in range(r - RADIUS, r + RADIUS + 1)]
    view[RADIUS] = view[RADIUS][:RADIUS] + "A" + view[RADIUS][RADIUS + 1:]
    return "|".join(view) + " " + "-du"[(gr > r) - (gr < r)] + "-rl"[(gc > c) - (gc < c)]


learner_prompt = ego_prompt


def distances(rows):
    """Moves from each cell to the goal avoiding holes (BFS from the goal; walls block both
    ways, so the distance is the same walked either way)."""
    goal = next((i, row.index("G")) for i, row in enumerate(rows) if "G" in row)
    dist, queue = {goal: 0}, deque([goal])
    while queue:
        pos = queue.popleft()
        for move in MOVES:
            nxt = step(rows, pos, move)
            if nxt is not None and nxt not in dist and rows[nxt[0]][nxt[1]] != "H":
                dist[nxt] = dist[pos] + 1
                queue.append(nxt)
    return dist


def put(rows, pos, mark):
    return [row if i != pos[0] else row[:pos[1]] + mark + row[pos[1] + 1:]
            for i, row in enumerate(rows)]


def random_walk(board, moves, rng):
    """The boards of a walk of up to `moves` uniformly random moves from board, each into
    neither a hole nor the goal, board first (fewer where none is left)."""
    boards = [board]
    for _ in range(moves):
        safe = [nxt for nxt, final in (result(board, m) for m in move_texts(board))
                if final is None]
        if not safe:
            break
        board = rng.choice(safe)
        boards.append(board)
    return boards


def warm_positions(rng, n_maps=400):
    """The warm start's boards: n_maps train maps, each walked at random (into no hole) for as
    many moves as it has cells, every board on the way with its trail."""
    boards = []
    for _ in range(n_maps):
        board = draw_map("train", rng)
        cells = len(parse_map(board)[0]) ** 2
        boards += random_walk(board, cells, rng)[:cells]
    return boards


def move_texts(board, optimal=False):
    """The legal moves as the lobe writes them ('u', 'd', 'l', 'r'), or only those on a shortest
    path to the goal (none where holes cut the agent off)."""
    rows, pos = parse_map(board)
    legal = [m for m in MOVES if step(rows, pos, m)]
    if optimal:
        dist = distances(rows)
        legal = [m for m in legal if pos in dist and dist.get(step(rows, pos, m)) == dist[pos] - 1]
    return [m[0] for m in legal]


def starts(n, rng, openings):
    """n random train maps, each after 0..EXPLORE x its cells random safe moves, their trail laid
    (openings is tic-tac-toe's)."""
    boards = []
    for _ in range(n):
        board = draw_map("train", rng)
        cells = len(parse_map(board)[0]) ** 2
        boards.append(random_walk(board, rng.randint(0, int(EXPLORE * cells)), rng)[-1])
    return boards


def landing(board, text):
    """(rows, the agent's cell, the cell the move `text` leads to, None if illegal or
    unreadable): what result and move_reward both read."""
    rows, pos = parse_map(board)
    move = read_move(text)
    return rows, pos, step(rows, pos, move) if move else None


def result(board, text):
    """What the move `text` does: (the board after it, the final score: 1 at the goal, 0 in a
    hole, None while the walk goes on); an illegal or unreadable move is (None, 0.0), a forfeit."""
    rows, pos, nxt = landing(board, text)
    if nxt is None:
        return None, 0.0
    cell = rows[nxt[0]][nxt[1]]
    rows = put(put(rows, pos, left_behind(rows[pos[0]][pos[1]])), nxt, agent_on(cell))
    return "\n".join(rows), {"G": 1.0, "H": 0.0}.get(cell)


def move_reward(board, text):
    """The reward a move earns on the way, before the walk's outcome: -REVISIT_COST for each
    time the walker has left the cell it steps back onto (TRAIL), else 0."""
    rows, _, nxt = landing(board, text)
    return -REVISIT_COST * TRAIL.get(rows[nxt[0]][nxt[1]], 0) if nxt is not None else 0.0


def play_batch(n_games, opponents, mover, rng, starts):
    """n_games walks in lockstep from the maps `starts` (opponents and rng are unused: one
    player, no slip). mover(boards) -> [(move text, note)] for every walk still going. Returns
    history[g] = [(0, board, note)] and outcome[g] = (r,): +1 at the goal, -1 in a hole or on an
    illegal move, RAN_OUT after as many moves as the map has cells: a walk that long has gone
    round in a loop (Gridworld allows 4 times that: play.py's human walker needs room to err)."""
    boards = list(starts)
    history, outcome = [[] for _ in boards], [None] * len(boards)
    limit = [len(parse_map(b)[0]) ** 2 for b in boards]
    while any(o is None for o in outcome):
        live = [g for g, o in enumerate(outcome) if o is None]
        for g, (text, note) in zip(live, mover([boards[g] for g in live])):
            history[g].append((0, boards[g], note))
            nxt, score = result(boards[g], text)
            if nxt is None or score is not None:
                outcome[g] = (-1,) if nxt is None else (round(2 * score - 1),)
            else:
                boards[g] = nxt
                outcome[g] = (RAN_OUT,) if len(history[g]) >= limit[g] else None
    return history, outcome


def evaluate(choose):
    """The policy choose(boards) -> move texts on EVAL_MAPS test maps (4x4-5x5, as in training)
    and EVAL_MAPS ood maps (8x8): the share that reach the goal, their moves over the BFS
    optimum, the share lost to an illegal move and the share that ran out of moves (the rest fell
    in a hole)."""
    r = {}
    for split in ("test", "ood"):
        maps = make_maps(split, EVAL_MAPS, seed=0)
        history, outcome = play_batch(len(maps), None,       # each move noted with its text
                                      lambda boards: [(t, t) for t in choose(boards)], None, maps)
        won = [g for g, o in enumerate(outcome) if o == (1,)]
        r[f"success_{split}"] = len(won) / len(maps)
        r[f"path_{split}"] = (sum(len(history[g]) / len(solve(maps[g])) for g in won) /
                              max(1, len(won)))
        last = [result(h[-1][1], h[-1][2]) for h in history]    # (next board, final score)
        r[f"illegal_{split}"] = sum(nxt is None for nxt, _ in last) / len(maps)
        r[f"ran_out_{split}"] = sum(nxt is not None and final is None
                                    for nxt, final in last) / len(maps)
    return r


if __name__ == "__main__":
    for split in ("train", "ood"):
        text = make_maps(split, 1, seed=0)[0]
        print(f"{split} map:\n{text}\noptimal path: {' '.join(solve(text))}\n")
