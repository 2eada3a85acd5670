"""``torch.optim`` Adam, AdamW and SGD behind the optimiser interface ``fit`` uses
(``set_hyper``, ``state_arrays``, ``load_state_arrays``)."""

import numpy as np


class TorchOptimizer:
    """A ``torch.optim`` optimiser with the interface ``fit`` uses."""

    def __init__(self, torch, params, kind, lr, weight_decay, momentum):
        self.torch = torch
        if kind == "sgd":
            self.native = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        else:
            cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
            self.native = cls(params, lr=lr, weight_decay=weight_decay)

    def set_hyper(self, lr, weight_decay):
        for group in self.native.param_groups:
            group["lr"], group["weight_decay"] = lr, weight_decay

    def state_arrays(self):
        state = self.native.state_dict()["state"]
        steps = [int(s["step"]) for s in state.values() if "step" in s]
        out = {"step": np.asarray(steps[0] if steps else 0, np.int64)}
        for i, slots in state.items():
            out.update({f"{i}.{k}": v.detach().cpu().numpy() for k, v in slots.items() if k != "step" and v is not None})
        return out

    def load_state_arrays(self, arrays):
        current = self.native.state_dict()
        state = {}
        for key, value in arrays.items():
            if key != "step":
                i, slot = key.split(".", 1)
                state.setdefault(int(i), {})[slot] = self.torch.as_tensor(np.asarray(value))
        if "step" in arrays and int(arrays["step"]) > 0:
            for slots in state.values():
                if "exp_avg" in slots:  # Adam keeps its step count per parameter
                    slots["step"] = self.torch.tensor(float(arrays["step"]))
        self.native.load_state_dict({"state": state, "param_groups": current["param_groups"]})
