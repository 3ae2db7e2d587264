"""Evasion benchmark: spam recall at the move and flag thresholds under spammers' cheap tricks.

    python benchmarks/evasion.py [--model DIR] [--split TSV] [--corpus DIR] [--half test]
                                 [--limit N] [--every N] [--views model|on|off] [--name LABEL]
                                 [--embeddings-cache CACHE.npz] [--cascade]
                                 [--out results/evasion-LABEL.json]

Every spam of one half of a split (by default the SpamAssassin test half) is rewritten by
each trick below and scored by the model's full head (with --cascade: by the cascade fitted
for it, stage 0 in front, as mail is scored by default). For each trick the table gives how many
spam it applies to, recall at the move (0.90) and flag (0.50) thresholds on those spam
untouched and tricked, and the change at the move threshold. The acceptance rule of issue 21:
under every trick, recall at the move threshold stays within 5 points of untouched.

The split is any TSV with `path`, `label` and `split` columns: the shared SpamAssassin split,
or the modern corpus manifest (data/modern/manifest.tsv with --corpus the folder
scripts/fetch-modern-corpus printed and --half dev). Reading a test half is measurement only:
nothing here is chosen on it.

Tricks (each one a function of the raw bytes; a message a trick cannot apply to is left out
of that trick's row, and the row says how many it applied to):

- round-trip: parsed and written back unchanged by the standard library (a control: every
  body-rewriting trick goes through it, so its row separates the trick from the rewrite);
- links-unrelated: 50 links to 50 well-known unrelated sites appended to every text part;
- links-own: the message's own first link appended 50 times (spam with a link only);
- words-paragraph: a paragraph of ordinary text appended;
- words-newsletter: a quoted newsletter appended (">"-quoted, as in a reply);
- mime-nested: the body wrapped in 1,000 levels of multipart/mixed;
- hidden-display-none, hidden-white, hidden-tiny-font: the newsletter and the paragraph
  added to every HTML part inside an element a reader does not see (spam with HTML only);
- zero-width, homoglyphs: zero-width spaces inside, or Cyrillic look-alike letters in place
  of Latin ones in, the classic spam words of subject and text;
- base64: every text part re-encoded as base64;
- image-only: the body replaced by an image, the message's own link around it and one short
  line of text (subject and sender kept);
- subject-long: the subject replaced by a long, innocent one.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as _dt
import email
import email.charset
import email.generator
import email.header
import io
import json
import re
import sys
import time
from collections.abc import Callable
from email.message import Message as EmailMessage
from email.policy import compat32
from pathlib import Path
from typing import Any

import numpy as np

from spamguard.message import split_header_fields, with_subject

# The tests import this as `benchmarks.evasion`; a script run finds `_corpora` by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpora import SPAMASSASSIN_SPLIT as SPLIT

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path.home() / ".cache/spamguard/corpora/spamassassin"
RESULTS = ROOT / "benchmarks" / "results"
MOVE, FLAG = 0.90, 0.50
NESTING = 1000

PARAGRAPH = (
    "The committee met on Tuesday afternoon to review the draft budget for next year. "
    "Most of the discussion was about the library roof, which has leaked again after the "
    "storms in October, and about whether the summer reading programme should move to the "
    "community hall while the work is done. Margaret agreed to ask two local builders for "
    "quotes before the next meeting, and Tom will write to the parents who volunteered last "
    "year. The minutes of the previous meeting were approved with one small correction to "
    "the date of the spring fair. We also thanked the students who repainted the benches in "
    "the park; they did a careful job and finished a week early. The next meeting will be "
    "held on the second Thursday of the month at seven o'clock in the usual room."
)
NEWSLETTER = """On Mon, 3 Jun 2002, Linux Weekly Digest wrote:
> This week in the kernel: the 2.4.19 release candidate fixes a number of
> problems with the IDE drivers and the new scheduler patches are being
> tested on larger machines. Alan Cox has posted a set of changes for the
> -ac tree, and the discussion about the block layer rewrite continues on
> the mailing list.
>
> Security: updated packages for OpenSSH and Apache are available from
> most distributions; administrators are advised to upgrade.
>
> Events: the Ottawa Linux Symposium takes place at the end of June. The
> programme and the list of tutorials have been published on the web site.
>
> To change your subscription options, visit the list information page or
> write to the list administrator."""
SHORT_LINE = "Please see the picture below."
LONG_SUBJECT = (
    "Notes from Tuesday's planning meeting, the revised schedule for the autumn term and a "
    "question about the shared calendar for the project review next week"
)
UNRELATED_SITES = (
    "en.wikipedia.org/wiki/Main_Page",
    "www.bbc.co.uk/news",
    "www.python.org/doc/",
    "www.gnu.org/licenses/",
    "www.kernel.org/pub/",
    "www.debian.org/News/",
    "www.apache.org/foundation/",
    "www.mozilla.org/en-US/",
    "www.w3.org/TR/",
    "www.ietf.org/rfc/",
    "www.nytimes.com/section/world",
    "www.theguardian.com/uk",
    "www.nasa.gov/missions/",
    "www.noaa.gov/weather",
    "www.loc.gov/collections/",
    "www.archive.org/details/texts",
    "www.openssl.org/docs/",
    "www.perl.org/books/",
    "www.postgresql.org/docs/",
    "www.mysql.com/products/",
    "www.sourceforge.net/projects/",
    "www.slashdot.org/",
    "www.freebsd.org/releases/",
    "www.redhat.com/en/topics",
    "www.ubuntu.com/download",
    "www.oreilly.com/library/",
    "www.usenix.org/conferences",
    "www.acm.org/publications",
    "www.ieee.org/standards",
    "www.eff.org/issues",
    "www.fsf.org/campaigns",
    "www.samba.org/samba/docs/",
    "www.openbsd.org/faq/",
    "www.netbsd.org/docs/",
    "www.cpan.org/modules/",
    "www.imdb.com/chart/top",
    "www.weather.com/maps",
    "www.reuters.com/world/",
    "www.economist.com/science",
    "www.nature.com/news",
    "www.sciencemag.org/news",
    "www.smithsonianmag.com/history/",
    "www.nationalgeographic.com/animals",
    "www.metoffice.gov.uk/weather",
    "www.cam.ac.uk/research",
    "www.ox.ac.uk/admissions",
    "www.mit.edu/research/",
    "www.stanford.edu/academics/",
    "www.berkeley.edu/about",
    "www.harvard.edu/about/",
)
# Words spam filters have always caught, which is why spammers disguise them.
KEY_WORDS = [
    "free",
    "money",
    "cash",
    "credit",
    "loan",
    "loans",
    "mortgage",
    "rates",
    "rate",
    "offer",
    "offers",
    "order",
    "click",
    "remove",
    "removed",
    "unsubscribe",
    "viagra",
    "pills",
    "prescription",
    "pharmacy",
    "meds",
    "cheap",
    "save",
    "discount",
    "price",
    "prices",
    "guaranteed",
    "guarantee",
    "income",
    "earn",
    "business",
    "opportunity",
    "investment",
    "stock",
    "million",
    "dollars",
    "winner",
    "won",
    "prize",
    "bonus",
    "casino",
    "debt",
    "refinance",
    "insurance",
    "quote",
    "sex",
    "adult",
    "girls",
    "dating",
    "weight",
    "lose",
    "diet",
    "sale",
    "deal",
    "deals",
    "limited",
    "urgent",
    "bank",
    "account",
    "password",
    "verify",
    "access",
    "special",
    "today",
    "now",
    "instant",
    "approved",
]
KEY_RE = re.compile(r"\b(" + "|".join(KEY_WORDS) + r")\b", re.IGNORECASE)
HOMOGLYPHS = str.maketrans(
    "aceopxyiACEOPXBHKMT",
    "\u0430\u0441\u0435\u043e\u0440\u0445\u0443\u0456\u0410\u0421\u0415\u041e\u0420\u0425\u0412\u041d\u041a\u041c\u0422",
)
ZWSP = "\u200b"

Rewriter = Callable[[bytes], bytes | None]


# --------------------------------------------------------------------------- raw helpers


def _is_content_field(field: bytes) -> bool:
    name = field.split(b":", 1)[0].strip().lower()
    return name.startswith(b"content-") or name == b"mime-version"


def _first_link(raw: bytes) -> str | None:
    from spamguard.message import parse_message

    urls = parse_message(raw).urls
    return urls[0] if urls else None


def _parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=compat32)


def _dump(msg: EmailMessage) -> bytes:
    out = io.BytesIO()
    email.generator.BytesGenerator(out, mangle_from_=False, maxheaderlen=0).flatten(msg)
    return out.getvalue()


def _text_parts(msg: EmailMessage) -> list[EmailMessage]:
    parts = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        disposition = str(part.get("Content-Disposition") or "").lower()
        if part.get_content_type() in ("text/plain", "text/html") and "attachment" not in (
            disposition
        ):
            parts.append(part)
    return parts


def _part_text(part: EmailMessage) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = b""
    charset = part.get_content_charset() or "latin-1"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("latin-1")


def _set_text(part: EmailMessage, text: str, *, encoding: str = "quoted-printable") -> None:
    cs = email.charset.Charset("utf-8")
    cs.body_encoding = email.charset.BASE64 if encoding == "base64" else email.charset.QP
    del part["Content-Transfer-Encoding"]
    part.set_payload(text, cs)


def _is_html(part: EmailMessage) -> bool:
    return part.get_content_type() == "text/html"


def _html_append(html_text: str, addition: str) -> str:
    """Insert ``addition`` before </body> (or at the end)."""
    m = re.search(r"</body\s*>", html_text, re.IGNORECASE)
    if m:
        return html_text[: m.start()] + addition + html_text[m.start() :]
    return html_text + addition


def _rewrite_parts(
    raw: bytes,
    plain: Callable[[str], str] | None,
    html: Callable[[str], str] | None,
    *,
    encoding: str = "quoted-printable",
) -> bytes | None:
    """Apply ``plain``/``html`` to every inline text part; None when there is none to change."""
    msg = _parse(raw)
    changed = False
    for part in _text_parts(msg):
        fn = html if _is_html(part) else plain
        if fn is None:
            continue
        _set_text(part, fn(_part_text(part)), encoding=encoding)
        changed = True
    return _dump(msg) if changed else None


def _html_escape(text: str) -> str:
    import html as _html

    return _html.escape(text).replace("\n", "<br>\n")


# ----------------------------------------------------------------------------------- tricks


def round_trip(raw: bytes) -> bytes | None:
    return _dump(_parse(raw))


def links_unrelated(raw: bytes) -> bytes | None:
    urls = [f"http://{site}" for site in UNRELATED_SITES]
    return _append_links(raw, urls)


def links_own(raw: bytes) -> bytes | None:
    link = _first_link(raw)
    return _append_links(raw, [link] * 50) if link else None


def _append_links(raw: bytes, urls: list[str]) -> bytes | None:
    plain = "\n\n" + "\n".join(urls) + "\n"
    html = "<p>" + "<br>\n".join(f'<a href="{u}">{u}</a>' for u in urls) + "</p>"
    return _rewrite_parts(raw, lambda t: t + plain, lambda t: _html_append(t, html))


def words_paragraph(raw: bytes) -> bytes | None:
    return _rewrite_parts(
        raw,
        lambda t: t + "\n\n" + PARAGRAPH + "\n",
        lambda t: _html_append(t, "<p>" + _html_escape(PARAGRAPH) + "</p>"),
    )


def words_newsletter(raw: bytes) -> bytes | None:
    return _rewrite_parts(
        raw,
        lambda t: t + "\n\n" + NEWSLETTER + "\n",
        lambda t: _html_append(t, "<blockquote>" + _html_escape(NEWSLETTER) + "</blockquote>"),
    )


def _hidden(open_tag: str, close_tag: str) -> Rewriter:
    filler = _html_escape(PARAGRAPH + "\n\n" + NEWSLETTER)

    def trick(raw: bytes) -> bytes | None:
        return _rewrite_parts(raw, None, lambda t: _html_append(t, open_tag + filler + close_tag))

    return trick


hidden_display_none = _hidden('<div style="display:none">', "</div>")
hidden_white = _hidden('<font color="#ffffff">', "</font>")
hidden_tiny_font = _hidden('<span style="font-size:0px">', "</span>")


def mime_nested(raw: bytes, depth: int = NESTING) -> bytes | None:
    fields, eol, body = split_header_fields(raw)
    top = [f for f in fields if not _is_content_field(f)]
    content = [f for f in fields if _is_content_field(f) and not f.lower().startswith(b"mime-")]
    if not content:
        content = [b"Content-Type: text/plain; charset=us-ascii"]
    inner = eol.join(content) + eol + eol + body
    for level in range(depth):
        b = f"nest{level:04d}".encode()
        inner = (
            b"Content-Type: multipart/mixed; boundary=" + b + eol + eol
            + b"--" + b + eol + inner + eol + b"--" + b + b"--" + eol
        )  # fmt: skip
    return eol.join([*top, b"MIME-Version: 1.0"]) + eol + inner


def _obfuscate(fn: Callable[[str], str]) -> Rewriter:
    def in_html(text: str) -> str:
        # Only text between tags: links and attributes stay intact.
        return "".join(
            chunk if chunk.startswith("<") else KEY_RE.sub(lambda m: fn(m.group()), chunk)
            for chunk in re.split(r"(<[^>]*>)", text)
        )

    def trick(raw: bytes) -> bytes | None:
        msg = _parse(raw)
        subject = _decoded_subject(msg)
        changed = False
        if KEY_RE.search(subject):
            del msg["Subject"]
            msg["Subject"] = email.header.Header(
                KEY_RE.sub(lambda m: fn(m.group()), subject), "utf-8"
            )
            changed = True
        for part in _text_parts(msg):
            text = _part_text(part)
            if not KEY_RE.search(text):
                continue
            new = in_html(text) if _is_html(part) else KEY_RE.sub(lambda m: fn(m.group()), text)
            _set_text(part, new)
            changed = True
        return _dump(msg) if changed else None

    return trick


def _decoded_subject(msg: EmailMessage) -> str:
    value = msg.get("Subject")
    if value is None:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except Exception:
        return str(value)


zero_width = _obfuscate(lambda w: ZWSP.join(w))
homoglyphs = _obfuscate(lambda w: w.translate(HOMOGLYPHS))


def base64_parts(raw: bytes) -> bytes | None:
    return _rewrite_parts(raw, lambda t: t, lambda t: t, encoding="base64")


# A 1x1 transparent GIF: what matters is that the body is an image.
_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def image_only(raw: bytes) -> bytes | None:
    link = _first_link(raw)
    fields, eol, _ = split_header_fields(raw)
    top = [f for f in fields if not _is_content_field(f)]
    img = '<img src="cid:offer@img">'
    if link:
        img = f'<a href="{link}">{img}</a>'
    html = f"<html><body><p>{SHORT_LINE}</p>{img}</body></html>"
    gif = base64.encodebytes(_GIF).decode().strip()
    body = (
        "--rel0\n"
        'Content-Type: text/html; charset="us-ascii"\n\n'
        f"{html}\n"
        "--rel0\n"
        "Content-Type: image/gif\n"
        "Content-Transfer-Encoding: base64\n"
        "Content-ID: <offer@img>\n"
        'Content-Disposition: inline; filename="offer.gif"\n\n'
        f"{gif}\n"
        "--rel0--\n"
    ).replace("\n", eol.decode())
    return (
        eol.join([*top, b"MIME-Version: 1.0", b'Content-Type: multipart/related; boundary="rel0"'])
        + eol
        + eol
        + body.encode()
    )


def subject_long(raw: bytes) -> bytes | None:
    return with_subject(raw, LONG_SUBJECT)


TRICKS: dict[str, Rewriter] = {
    "round-trip": round_trip,
    "links-unrelated": links_unrelated,
    "links-own": links_own,
    "words-paragraph": words_paragraph,
    "words-newsletter": words_newsletter,
    "mime-nested": mime_nested,
    "hidden-display-none": hidden_display_none,
    "hidden-white": hidden_white,
    "hidden-tiny-font": hidden_tiny_font,
    "zero-width": zero_width,
    "homoglyphs": homoglyphs,
    "base64": base64_parts,
    "image-only": image_only,
    "subject-long": subject_long,
}


# ------------------------------------------------------------------------------- measuring


class _MemoEncoder:
    """The int8 encoder, remembering the vector of every text it has encoded."""

    def __init__(self, encoder: object, cache: Path | None = None) -> None:
        self.encoder = encoder
        self.known: dict[str, np.ndarray] = {}
        self.cache = cache
        if cache is not None and cache.is_file():
            with np.load(cache, allow_pickle=False) as data:
                self.known = dict(zip(data["texts"].tolist(), data["vectors"], strict=True))

    def save(self) -> None:
        if self.cache is not None and self.known:
            texts = list(self.known)
            np.savez(
                self.cache, texts=np.asarray(texts), vectors=np.stack(list(self.known.values()))
            )

    def encode(self, texts: list[str], batch_size: int = 1) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.known))
        if missing:
            vectors = self.encoder.encode(missing, batch_size=batch_size)  # type: ignore[attr-defined]
            self.known.update(zip(missing, np.asarray(vectors, dtype=np.float32), strict=True))
        return np.stack([self.known[t] for t in texts])


def spam_of(
    split: Path,
    corpus: Path,
    half: str,
    limit: int | None,
    every: int = 1,
    source: str | None = None,
) -> list[tuple[str, bytes]]:
    """The spam of one half (of one modern ``source`` only, when given), in split order;
    every ``every``-th one, at most ``limit``."""
    with split.open(newline="", encoding="utf-8") as fh:
        rows = [
            r
            for r in csv.DictReader(fh, delimiter="\t")
            if r["split"] == half and (source is None or r.get("source") == source)
        ]
    spam = [_local_path(r) for r in rows if r["label"] == "spam"][::every]
    out = [(p, (corpus / p).read_bytes()) for p in spam]
    return out[:limit] if limit else out


def _local_path(row: dict[str, str]) -> str:
    """Where a row's message lies below the corpus folder: the split's path, or for the
    modern corpus manifest (source and commit columns) where scripts/fetch-modern-corpus
    puts it."""
    if row.get("source") and row.get("commit"):
        return f"{row['source'].replace('/', '+')}/{row['commit']}/{row['path']}"
    return row["path"]


def score_raw(scorer: object, raws: list[bytes]) -> np.ndarray:
    from spamguard.message import parse_message

    probs: list[float] = []
    for start in range(0, len(raws), 64):
        batch = [parse_message(r) for r in raws[start : start + 64]]
        probs += [s.p_spam for s in scorer.score(batch)]  # type: ignore[attr-defined]
    return np.asarray(probs, dtype=np.float64)


def run(
    scorer: object, spam: list[tuple[str, bytes]], tricks: dict[str, Rewriter]
) -> dict[str, dict[str, object]]:
    raws = [r for _, r in spam]
    t0 = time.perf_counter()
    base = score_raw(scorer, raws)
    rows: dict[str, dict[str, object]] = {
        "untouched": _row(base, base, len(raws), 0, time.perf_counter() - t0)
    }
    for name, trick in tricks.items():
        t0 = time.perf_counter()
        idx: list[int] = []
        tricked: list[bytes] = []
        failed = 0
        for i, raw in enumerate(raws):
            try:
                new = trick(raw)
            except Exception:  # a message the standard library cannot rewrite
                failed += 1
                continue
            if new is not None:
                idx.append(i)
                tricked.append(new)
        p = score_raw(scorer, tricked) if tricked else np.zeros(0)
        rows[name] = _row(base[idx], p, len(idx), failed, time.perf_counter() - t0)
        print(_line(name, rows[name]), file=sys.stderr, flush=True)
    return rows


def _row(p_before: np.ndarray, p_after: np.ndarray, n: int, failed: int, secs: float) -> dict:
    def rate(p: np.ndarray, t: float) -> float:
        return float(np.mean(p >= t)) if len(p) else float("nan")

    return {
        "n": n,
        "not_rewritable": failed,
        "untouched_recall_move": rate(p_before, MOVE),
        "untouched_recall_flag": rate(p_before, FLAG),
        "recall_move": rate(p_after, MOVE),
        "recall_flag": rate(p_after, FLAG),
        "delta_move_points": 100 * (rate(p_after, MOVE) - rate(p_before, MOVE)),
        "median_p": float(np.median(p_after)) if len(p_after) else float("nan"),
        "seconds": round(secs, 1),
    }


HEAD = (
    f"{'trick':<21} {'n':>5}  {'untouched@0.90':>14} {'tricked@0.90':>12} {'Δ points':>8}"
    f"  {'untouched@0.50':>14} {'tricked@0.50':>12}  within 5"
)


def _line(name: str, r: dict) -> str:
    ok = "yes" if r["delta_move_points"] >= -5.0 else "NO"
    return (
        f"{name:<21} {r['n']:>5}  {r['untouched_recall_move']:>14.3f} {r['recall_move']:>12.3f}"
        f" {r['delta_move_points']:>+8.1f}  {r['untouched_recall_flag']:>14.3f}"
        f" {r['recall_flag']:>12.3f}  {ok}"
    )


def _code_version() -> str:
    """The commit of the SpamGuard code that scored (and whether it had local changes)."""
    import subprocess

    import spamguard

    where = Path(spamguard.__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(where)
    return f"{head}{' with local changes' if dirty else ''} ({where})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: the shipped model)")
    parser.add_argument("--split", type=Path, default=SPLIT)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--half", default="test")
    parser.add_argument("--limit", type=int)
    parser.add_argument(
        "--every",
        type=int,
        default=1,
        help="take every N-th spam only (a fixed, evenly spread sample; 1 = all)",
    )
    parser.add_argument("--tricks", help="comma-separated subset of: " + ", ".join(TRICKS))
    parser.add_argument("--name", default="", help="label for the results file")
    parser.add_argument(
        "--embeddings-cache",
        type=Path,
        help="an .npz of sentence vectors by text, read if it exists and written back (the "
        "encoder gives a text the same vector every time; this only saves time)",
    )
    parser.add_argument(
        "--views",
        choices=("model", "on", "off"),
        default="model",
        help="scoring views (spamguard/scoring/views.py): as the model's config.json says "
        "(default), on with the default settings, or off (the whole message only)",
    )
    parser.add_argument(
        "--cascade",
        action="store_true",
        help="score through the cascade fitted for the model (stage 0 in front, as mail is "
        "scored by default) instead of its full head alone",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from spamguard.scoring.encoder import load_encoder
    from spamguard.scoring.model import load_scorer

    model_dir = Path(args.model) if args.model else None
    # One vector per distinct text: most tricks leave the opening the encoder reads as it was.
    memo = _MemoEncoder(load_encoder("int8", threads=1), args.embeddings_cache)
    scorer: Any = load_scorer(model_dir, encoder=memo)
    heads = [scorer]
    if args.cascade:
        from spamguard.scoring.assemble import load_default_scorer
        from spamguard.scoring.cascade import Cascade

        scorer = load_default_scorer(model_dir, encoder=memo)
        if not isinstance(scorer, Cascade):
            parser.error(f"no cascade fits {scorer.version}")
        heads = list(scorer.stages)
    for head in heads:
        head.top_evidence = 0
        head.n_neighbours = 0
    if args.views != "model":
        from spamguard.scoring.views import ViewConfig

        scorer.model.views = ViewConfig(enabled=args.views == "on")
    tricks = TRICKS
    if args.tricks:
        tricks = {k: TRICKS[k] for k in args.tricks.split(",")}
    spam = spam_of(args.split, args.corpus, args.half, args.limit, args.every)
    print(
        f"{len(spam)} spam of the {args.half} half of {args.split.name}, model {scorer.version}",
        file=sys.stderr,
    )
    print(HEAD, file=sys.stderr)
    rows = run(scorer, spam, tricks)
    memo.save()
    print(f"\nmodel {scorer.version}; {len(spam)} spam, {args.split.name} {args.half} half")
    print(HEAD)
    for name, r in rows.items():
        print(_line(name, r))
    label = args.name or scorer.version
    out = args.out or RESULTS / f"issue21-evasion-{label}-{args.split.stem}-{args.half}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "model": scorer.version,
        "model_dir": str(model_dir or "shipped default"),
        "split": str(args.split),
        "half": args.half,
        "n_spam": len(spam),
        "every": args.every,
        "thresholds": {"move": MOVE, "flag": FLAG},
        "scorer": (
            "the cascade (stage 0, then the full head), as `spamguard score`"
            if args.cascade
            else "the model's full head (no cascade), as `spamguard score --no-cascade`"
        ),
        "views": scorer.model.views.to_json(),
        "code": _code_version(),
        "measured_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "tricks": rows,
    }
    out.write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
