"""Tier 6: the event files hold exactly the documented tags (read with TensorBoard's own reader),
and the instruments serve any algorithm: here DQN's Q-network and TD loss."""

import re
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dirtyrl.algos import vpg
from dirtyrl.config import DebugConfig, EnvConfig, RunConfig
from dirtyrl.debug import attach
from dirtyrl.commands.graph import dqn_td_problem

DOCS = Path(__file__).resolve().parents[1] / "docs" / "instruments.md"
PLACEHOLDER = {"<param>": r"[\w.]+", "<module>": r"[\w.]+", "<check>": r"\w+", "<stat>": r"(mean|std|zero_frac|dead_frac)"}


def documented_tags():
    section = DOCS.read_text().split("<!-- tags -->")[1].split("<!-- /tags -->")[0]
    tags = re.findall(r"^- `([^`]+)`", section, flags=re.M)
    patterns = {}
    for tag in tags:
        regex = re.escape(tag)
        for placeholder, part in PLACEHOLDER.items():
            regex = regex.replace(re.escape(placeholder), part)
        patterns[tag] = re.compile(regex + "$")
    return patterns


class RecordingLogger:
    def __init__(self):
        self.tags = set()

    def scalar(self, tag, value, step):
        self.tags.add(tag)

    histogram = image = scalar

    def text(self, tag, text, step=0):
        self.tags.add(tag)


@pytest.fixture(scope="module")
def pong_run(tmp_path_factory):
    """One Pong episode of VPG with every TensorBoard-writing instrument on."""
    run_dir = tmp_path_factory.mktemp("tb") / "pong"
    debug = DebugConfig(inspect_every=300, grad_stats_every=1, hooks=["fc2"], trap="warn", trap_grad_norm=1e-9)
    vpg.train(
        vpg.Config(
            env=EnvConfig(env="pong"),
            run=RunConfig(total_episodes=1, run_dir=str(run_dir), progress="off"),
            batch_episodes=1,
            debug=debug,
        )
    )
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return run_dir, acc


def test_event_files_hold_exactly_the_documented_tags(pong_run):
    _, acc = pong_run
    tags = acc.Tags()
    # add_text stores "<tag>/text_summary" as a tensor.
    texts = {t.removesuffix("/text_summary") for t in tags["tensors"]}
    written = {t for t in (*tags["scalars"], *tags["histograms"], *tags["images"], *texts) if t.startswith("debug/")}
    patterns = documented_tags()
    undocumented = [t for t in written if not any(p.match(t) for p in patterns.values())]
    unwritten = [doc for doc, p in patterns.items() if not any(p.match(t) for t in written)]
    assert not undocumented, f"tags missing from docs/instruments.md: {undocumented}"
    assert not unwritten, f"documented tags this run did not write: {unwritten}"
    assert {"debug/inspect"} <= set(tags["images"])
    assert {"debug/weight/fc1.weight", "debug/grad/fc2.weight"} <= set(tags["histograms"])
    for tag in (
        "debug/global_grad_norm",
        "debug/grad_norm/fc1.weight",
        "debug/update_ratio/fc2.weight",
        "debug/activation/fc2/dead_frac",
        "debug/activation_grad/fc2/std",
        "debug/param_grad/fc2.weight/mean",
        "debug/trap/grad_norm",
    ):
        assert tag in tags["scalars"], tag


def test_inspected_frames_were_written_beside_the_events(pong_run):
    run_dir, acc = pong_run
    pngs = sorted((run_dir / "inspect").glob("step-*.png"))
    assert len(pngs) == len(acc.Images("debug/inspect")) >= 2
    image = acc.Images("debug/inspect")[0]
    assert (image.width, image.height) == (976, 440)


def test_instruments_work_on_dqn_q_network_and_td_loss(tmp_path):
    qnet, td_loss_of_first = dqn_td_problem("CartPole-v1", 16, seed=0)
    logger = RecordingLogger()
    debug = DebugConfig(grad_stats_every=1, hooks=["net.0", "net.1"], trap="stop")
    with attach(debug, qnet, logger, tmp_path) as instruments:
        loss = td_loss_of_first(16)  # dqn.td_loss: the function DQN's learner differentiates
        loss.backward()
        instruments.after_backward(0, 100, loss, entropy=None)  # DQN has no policy entropy
        torch.optim.Adam(qnet.parameters(), lr=1e-3).step()
        instruments.after_step(1, 100)
    assert {
        "debug/grad_norm/net.4.weight",
        "debug/update_ratio/net.0.bias",
        "debug/activation/net.1/dead_frac",
        "debug/activation_grad/net.0/mean",
        "debug/param_grad/net.0.weight/std",
    } <= logger.tags
    assert not any(tag.startswith("debug/trap") for tag in logger.tags)  # healthy: no trap tripped
    assert all(not m._forward_hooks and not m._backward_hooks for m in qnet.modules())
