"""Host-to-device copies of a batch (``to_device``): pinned then asynchronous to CUDA, direct
to other devices, untouched on a CPU. No GPU is needed: the CUDA case records what it is asked
to do through a stand-in for the two tensor methods (a CPU build of torch can neither pin nor
reach CUDA)."""

import torch

from taskbert.data.batching import collate, to_device


def _batch():
    rows = [{"input_ids": [5, 6, 7], "label": 1}, {"input_ids": [8], "label": 0}]
    batch = collate(rows, 0, {"input_ids": 0})
    batch["words"] = [["a"], ["b"]]   # a list stays a list
    return batch


def test_on_a_cpu_the_batch_is_left_as_it_is():
    batch = _batch()
    assert to_device(batch, torch.device("cpu")) is batch
    assert to_device(batch, "cpu") is batch


def test_to_cuda_each_tensor_is_pinned_then_copied_without_blocking(monkeypatch):
    calls = []

    def pin_memory(self):
        calls.append(("pin", self.shape))
        return self.clone()

    def to(self, device, non_blocking=False):
        calls.append(("to", str(device), non_blocking))
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    monkeypatch.setattr(torch.Tensor, "to", to)
    batch = _batch()
    tensors = [k for k, v in batch.items() if torch.is_tensor(v)]
    assert tensors and "attention_mask" in tensors
    moved = to_device(batch, torch.device("cuda", 0))
    assert moved["words"] is batch["words"]
    assert calls == [c for k in tensors for c in (("pin", batch[k].shape), ("to", "cuda:0", True))]
    calls.clear()
    to_device(batch, "cuda")   # a string names the device as well
    assert [c[0] for c in calls] == ["pin", "to"] * len(tensors)


def test_other_devices_copy_without_pinning(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: (_ for _ in ()).throw(AssertionError("pinned")))
    moved = to_device(_batch(), torch.device("meta"))
    assert all(v.device.type == "meta" for v in moved.values() if torch.is_tensor(v))
