"""Loading separators: local repos written by Demucs, pretrained names offline."""

from __future__ import annotations

import socket

import pytest
import torch

from emomucs.separation import SeparatorSpec, SeparatorUnavailableError, load_separator

from .tiny import tiny_htdemucs, write_repo


def test_local_repo_written_by_save_with_checksum_loads_the_same_model(tmp_path):
    original = tiny_htdemucs(seed=1)
    written = write_repo(tmp_path / "repo", "tiny", original)
    assert len(written.stem.rsplit("-", 1)[1]) == 8  # NAME-<sha256[:8]>.th
    loaded = load_separator(SeparatorSpec("local", "tiny", str(tmp_path / "repo")))
    assert loaded.sample_rate == 8000 and loaded.audio_channels == 2
    assert loaded.sources == ("drums", "bass", "other", "vocals")
    assert loaded.identity.startswith("local:tiny:")
    mix = torch.randn(1, 2, 8000)
    with torch.no_grad():
        assert torch.allclose(loaded.model(mix), original(mix), atol=1e-6)


def test_identity_follows_the_weights_not_the_name(tmp_path):
    write_repo(tmp_path / "a", "tiny", tiny_htdemucs(seed=1))
    write_repo(tmp_path / "b", "tiny", tiny_htdemucs(seed=1))
    write_repo(tmp_path / "c", "tiny", tiny_htdemucs(seed=2))
    identity = {
        folder: load_separator(
            SeparatorSpec("local", "tiny", str(tmp_path / folder))
        ).identity
        for folder in "abc"
    }
    assert identity["a"] == identity["b"]
    assert identity["a"] != identity["c"]


def test_local_bag_yaml_loads_a_bag_of_models(tmp_path):
    repo = tmp_path / "repo"
    first = write_repo(repo, "first", tiny_htdemucs(seed=1))
    write_repo(repo, "second", tiny_htdemucs(seed=2))
    (repo / "pair.yaml").write_text("models: ['first', 'second']\n")
    bag = load_separator(SeparatorSpec("local", "pair", str(repo)))
    assert type(bag.model).__name__ == "BagOfModels" and len(bag.model.models) == 2
    single = load_separator(SeparatorSpec("local", "first", str(repo)))
    assert bag.identity != single.identity
    first.unlink()
    with pytest.raises(SeparatorUnavailableError, match=r"names models \['first'\]"):
        load_separator(SeparatorSpec("local", "pair", str(repo)))


def test_missing_repo_or_model_says_how_to_get_one(tmp_path, tiny_repo):
    with pytest.raises(SeparatorUnavailableError, match="separator_training"):
        load_separator(SeparatorSpec("local", "tiny", str(tmp_path / "nowhere")))
    with pytest.raises(
        SeparatorUnavailableError, match=r"no model or bag named 'other'.*tiny"
    ):
        load_separator(SeparatorSpec("local", "other", str(tiny_repo)))


@pytest.mark.parametrize("hf_offline", ["1", ""])
def test_pretrained_name_offline_fails_fast_with_the_way_out(
    tmp_path, monkeypatch, hf_offline
):
    monkeypatch.setenv("HF_HUB_OFFLINE", hf_offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    # Fast because it never reaches for the network (no lookup, no connection to
    # time out), rather than a wall-clock bound.
    network = []

    def refuse(*args, **kwargs):
        network.append(args)
        raise OSError("network use in a test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(SeparatorUnavailableError) as error:
        load_separator(SeparatorSpec("pretrained", "htdemucs"))
    assert network == []
    message = str(error.value)
    assert "'htdemucs' is not in the local caches" in message
    assert (
        "HF_HUB_OFFLINE is set" if hf_offline else "allow_download is false"
    ) in message
    assert "get_model('htdemucs')" in message  # how to fetch the weights
    assert "kind: local" in message and "kind: oracle" in message  # what else to use


def test_pretrained_download_honours_hf_hub_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    with pytest.raises(SeparatorUnavailableError, match="HF_HUB_OFFLINE is set"):
        load_separator(SeparatorSpec("pretrained", "mdx_extra", allow_download=True))


def test_unknown_pretrained_name_lists_the_known_ones():
    with pytest.raises(
        SeparatorUnavailableError, match=r"not a pretrained.*htdemucs_ft"
    ):
        load_separator(SeparatorSpec("pretrained", "htdemucs_typo"))


def test_spec_validates_kind_and_options():
    with pytest.raises(ValueError, match="not one of"):
        SeparatorSpec("magic", "x")
    with pytest.raises(ValueError, match="needs a repo"):
        SeparatorSpec("local", "x")
    with pytest.raises(ValueError, match="unknown separator options"):
        SeparatorSpec.from_options({"kind": "oracle", "shifts": 1})
    assert SeparatorSpec.from_options({"kind": "oracle"}).kind == "oracle"


def test_pretrained_weights_in_the_torch_hub_cache_load_offline(tmp_path, monkeypatch):
    from emomucs.separation import package_model, separators

    catalogue = tmp_path / "remote"
    catalogue.mkdir()
    (catalogue / "tinybag.yaml").write_text("models: ['feedbeef']\n")
    url = "https://example.invalid/demucs/feedbeef-12345678.th"
    monkeypatch.setattr(
        separators, "_remote_catalogue", lambda: (catalogue, {"feedbeef": url})
    )
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = SeparatorSpec("pretrained", "tinybag")
    with pytest.raises(SeparatorUnavailableError, match="not in the local caches"):
        load_separator(spec)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(
        package_model(tiny_htdemucs(), {}),
        tmp_path / "hub/checkpoints/feedbeef-12345678.th",
    )
    loaded = load_separator(spec)
    assert loaded.identity == "pretrained:tinybag:feedbeef"
    assert loaded.sample_rate == 8000
