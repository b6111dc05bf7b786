"""Every private upstream name trl_ext relies on keeps its contract in the installed versions; a broken one is
reported naming the hook and the versions."""

import pytest

from trl_ext._compat import hooks


@pytest.mark.parametrize("hook", hooks.HOOKS, ids=lambda hook: hook.name.split("(")[0])
def test_upstream_private_names_keep_their_contract(hook):
    hook.verify()


def test_a_changed_hook_is_named_with_the_installed_versions(monkeypatch):
    from trl import DPOTrainer

    monkeypatch.delattr(DPOTrainer, "_precompute_ref_logps")
    hook = next(h for h in hooks.HOOKS if "_precompute_ref_logps" in h.name)
    with pytest.raises(hooks.HookChanged) as err:
        hook.verify()
    message = str(err.value)
    assert "trl.DPOTrainer._precompute_ref_logps" in message and "R-DPO" in message
    assert "trl 1." in message and "transformers " in message and "pyproject.toml" in message


def test_every_hook_is_checked():
    names = " ".join(h.name for h in hooks.HOOKS)
    for private in (
        "_precompute_ref_logps",
        "_prepare_dataset",
        "_signature_columns",
        "_metrics",
        "fused_lm_head",
        "_hf_deepspeed_config_weak_ref",
        "batch_repeat_interleave",
        "hf_quantizer",
    ):
        assert private in names, private
