"""The exposition writer against the format (the strict reader in
``prometheus_text`` and prometheus_client's parser), the reader's own
refusals, and the bounds on labels whatever clients send (docs/operations.md §1)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ipc_protocol import MessageType
from ipc_server.exposition import MAX_LABEL_BYTES, MAX_WHOLE_LABEL_BYTES, Exposition, label_value
from ipc_server.request_metrics import BUCKETS_S, MAX_SERIES, RequestMetrics
from ipc_server.stats import MAX_APPS, OTHER, ServerStats

from .prometheus_text import FormatError, parse


def test_label_values_and_help_are_escaped_and_read_back() -> None:
    out = Exposition()
    nasty = 'a "quoted" back\\slash\nnew line'
    out.counter("x_total", "help with \\ and\nnewline", [({"channel": nasty}, 3), ({"channel": "plain"}, 0)])
    out.gauge("y", "a float", [({}, 0.25), ({"k": "inf"}, float("inf"))])
    text = out.text().decode()
    families = parse(text)
    assert families["x_total"].value(channel=nasty) == 3
    assert families["y"].value(k="inf") == float("inf")
    theirs = {f.name: f for f in text_string_to_metric_families(text)}
    assert theirs["x"].samples[0].labels == {"channel": nasty}


def test_histograms_are_cumulative_and_end_in_inf() -> None:
    out = Exposition()
    out.histogram("d_seconds", "durations", (0.1, 1.0), [({"ch": "a"}, [2, 0, 1], 5.5, 3)])
    text = out.text().decode()
    assert 'd_seconds_bucket{ch="a",le="1.0"} 2' in text and 'd_seconds_bucket{ch="a",le="+Inf"} 3' in text
    assert parse(text)["d_seconds"].value("_count", ch="a") == 3


@pytest.mark.parametrize(
    "bad",
    [
        "# TYPE a counter\na 1\n",  # counter without _total
        "# TYPE a_total counter\na_total 1",  # no final newline
        "# TYPE a gauge\na 1\n\n",  # blank line
        "# TYPE a gauge\n# TYPE b gauge\na 1\n",  # a sample outside its family
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n# HELP a again\n",  # a family split
        "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",  # duplicate series
        "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n",  # repeated label
        "# TYPE a gauge\na{x=\"un\\escaped\"} 1\n",  # bad escape
        "# TYPE a gauge\na 1,5\n",  # not a number
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",  # not cumulative
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  # no +Inf
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",  # count disagrees
        "a 1\n",  # no TYPE
    ],
)
def test_the_strict_reader_refuses_what_the_format_does_not_allow(bad: str) -> None:
    with pytest.raises(FormatError):
        parse(bad)


def test_request_labels_stay_bounded() -> None:
    metrics = RequestMetrics()
    for i in range(MAX_SERIES + 50):
        metrics.answered("app", f"ch.{i}", "ok", 0.0)
    channels = metrics.apps["app"]
    assert len(channels) == MAX_SERIES + 1 and channels[OTHER].count == 50
    for i in range(MAX_APPS + 5):
        metrics.answered(f"app{i}", "ch.0", "ok", 0.0)
    assert len(metrics.apps) == MAX_APPS + 1 and OTHER in metrics.apps
    metrics.answered("app", "ch.0", "made-up-code-" * 3, 0.0)
    metrics.answered("app", "ch.0", "timeout", 0.0)
    assert channels["ch.0"].outcomes == {"ok": 1, OTHER: 1, "timeout": 1}
    assert channels["ch.0"].buckets[0] == 3 and len(channels["ch.0"].buckets) == len(BUCKETS_S) + 1


def test_app_counters_stay_bounded() -> None:
    stats = ServerStats()
    for i in range(MAX_APPS * 2):
        stats.traffic(f"app{i}").received[MessageType.PUBLISH] += 1
    assert len(stats.apps) == MAX_APPS + 2  # the handshake's, MAX_APPS apps, other
    assert stats.apps[OTHER].received[MessageType.PUBLISH] == MAX_APPS
    assert stats.messages_in == MAX_APPS * 2 and stats.by_type()["in"]["publish"] == MAX_APPS * 2


def test_a_long_label_value_is_cut_on_a_character_boundary_with_a_stable_hash() -> None:
    assert label_value("a" * MAX_WHOLE_LABEL_BYTES) == "a" * MAX_WHOLE_LABEL_BYTES  # 119 bytes: whole
    assert label_value("a" * 129) == "a" * 119 + "~55ada03e"  # the same in every process and release
    for char in ("a", "é", "€", "\U0001d11e"):  # 1 to 4 bytes in UTF-8
        cut = label_value(char * 300)
        assert 125 <= len(cut.encode()) <= MAX_LABEL_BYTES and cut.rstrip("0123456789abcdef").endswith(char + "~")
    assert len({label_value("€" * 250 + f"{i:06d}") for i in range(100)}) == 100  # the same first 119 bytes, 100 series


def test_a_value_written_whole_never_spells_a_cut_one() -> None:
    """Before, values of up to 128 bytes were written whole and a cut one
    was at most 128: an app named ``label_value(long)`` shared the long
    name's series. Now whole is at most 119 bytes, cut is 125-128."""
    for long in ("victim-" + "a" * 200, "a" * 120, "a" * 128, "€" * 41, "\U0001d11e" * 30):
        cut = label_value(long)
        assert len(cut.encode()) >= 125 and label_value(cut) != cut
    for length in range(1, 300):
        value = "a" * length
        assert (label_value(value) == value) == (length <= MAX_WHOLE_LABEL_BYTES)


def test_samples_whose_labels_meet_are_summed_never_repeated() -> None:
    """Two names share a label only when both are long, share their first
    119 bytes and their hashes collide (1 in 2**32); the page then sums
    them. Here the second sample's labels are the cut label itself, as a
    collision would give."""
    long = "x" * 200
    out = Exposition()
    label = label_value(long)
    out.counter("r_total", "requests", [({"channel": long}, 2), ({"channel": long}, 3), ({"channel": label}, 7), ({"channel": "a"}, 1)])
    out.histogram("d_seconds", "durations", (1.0,), [({"channel": long}, [1, 0], 0.5, 1), ({"channel": long}, [0, 2], 4.0, 2)])
    families = parse(out.text().decode())
    assert families["r_total"].value(channel=label) == 5 and families["r_total"].value(channel="a") == 1
    assert families["r_total"].value(channel=label_value(label)) == 7  # a name spelled as the cut label is its own series
    assert families["d_seconds"].value("_count", channel=label) == 3
    assert families["d_seconds"].value("_bucket", channel=label, le="1.0") == 1
    assert families["d_seconds"].value("_sum", channel=label) == 4.5
