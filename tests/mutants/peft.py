"""Mutants of solutions/peft.py (chapter 05)."""

from tests.mutants import Mutant

FREEZE_BASE = "        for p in self.base.parameters():\n            p.requires_grad_(False)\n"
MATCH = 'any(name == t or name.endswith("." + t) for t in target_modules)'
COUNT = "return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)"
ADAPTER = "return x + self.up(F.gelu(self.down(x)))"
ABSMAX = "absmax = blocks.abs().amax(dim=1)  # (n_blocks,)"
QLORA_INIT = "self.r, self.alpha, self.scaling, self.block_size = r, alpha, alpha / r, block_size"
QLORA_W = "weight = dequantize_nf4(self.codes, self.absmax, shape, self.block_size)  # (out, in)"

MUTANTS = (
    # LoRALinear
    Mutant(
        "lora_scaling_alpha",
        "LoRALinear",
        (
            (
                "self.r, self.alpha, self.scaling = r, alpha, alpha / r",
                "self.r, self.alpha, self.scaling = r, alpha, alpha",
            ),
        ),
        "alpha alone",
    ),
    Mutant(
        "lora_b_random",
        "LoRALinear",
        (
            (
                "torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype)",
                "torch.randn(base.out_features, r, device=w.device, dtype=w.dtype)",
            ),
        ),
        "before any training",
    ),
    Mutant("lora_base_trainable", "LoRALinear", ((FREEZE_BASE, ""),), "base layer trainable"),
    Mutant(
        "lora_dropout_on_base",
        "LoRALinear",
        (
            (
                "return self.base(x) + self.scaling * update",
                "return self.base(self.dropout(x)) + self.scaling * update",
            ),
        ),
        "base layer's output too",
    ),
    Mutant(
        "lora_dropout_ignored",
        "LoRALinear",
        (
            (
                "update = self.dropout(x) @ self.lora_A.T @ self.lora_B.T",
                "update = x @ self.lora_A.T @ self.lora_B.T",
            ),
        ),
        "ignores its dropout argument",
    ),
    Mutant(
        "lora_merge_unscaled",
        "LoRALinear",
        (
            (
                "merged.weight.copy_(w + self.scaling * self.lora_B @ self.lora_A)",
                "merged.weight.copy_(w + self.lora_B @ self.lora_A)",
            ),
        ),
        "W + B A",
    ),
    # apply_lora
    Mutant(
        "apply_plain_endswith",
        "apply_lora",
        ((MATCH, "any(name.endswith(t) for t in target_modules)"),),
        "dot boundary",
    ),
    Mutant(
        "apply_rest_trainable",
        "apply_lora",
        (("    for p in model.parameters():\n        p.requires_grad_(False)\n", ""),),
        "rest of the model trainable",
    ),
    Mutant(
        "apply_default_rank",
        "apply_lora",
        (
            (
                "LoRALinear(getattr(parent, child), r=r, alpha=alpha)",
                "LoRALinear(getattr(parent, child))",
            ),
        ),
        "default r and alpha",
    ),
    # count_parameters
    Mutant(
        "count_ignores_flag",
        "count_parameters",
        ((COUNT, "return sum(p.numel() for p in model.parameters())"),),
        "includes frozen",
    ),
    Mutant(
        "count_state_dict",
        "count_parameters",
        ((COUNT, "return sum(t.numel() for t in model.state_dict().values())"),),
        "buffers included",
    ),
    Mutant(
        "count_tied_twice",
        "count_parameters",
        (
            (
                COUNT,
                "return sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False)"
                " if p.requires_grad or not trainable_only)",
            ),
        ),
        "tied",
    ),
    # Adapter
    Mutant(
        "adapter_no_residual",
        "Adapter",
        ((ADAPTER, "return self.up(F.gelu(self.down(x)))"),),
        "without the residual",
    ),
    Mutant("adapter_relu", "Adapter", ((ADAPTER, ADAPTER.replace("F.gelu", "F.relu")),), "ReLU"),
    Mutant(
        "adapter_not_identity",
        "Adapter",
        (("        nn.init.zeros_(self.up.weight)\n        nn.init.zeros_(self.up.bias)\n", ""),),
        "starts as the identity",
    ),
    # SoftPrompt
    Mutant(
        "prompt_after",
        "SoftPrompt",
        (("torch.cat([prompt, embeds], dim=1)", "torch.cat([embeds, prompt], dim=1)"),),
        "after the embeddings",
    ),
    Mutant(
        "prompt_detached",
        "SoftPrompt",
        (
            (
                "prompt = self.prompt.to(embeds.dtype)",
                "prompt = self.prompt.detach().to(embeds.dtype)",
            ),
        ),
        "no gradient reaches the prompt",
    ),
    # quantize_nf4
    Mutant(
        "quantize_global_absmax",
        "quantize_nf4",
        ((ABSMAX, "absmax = blocks.abs().amax().expand(blocks.shape[0])  # (n_blocks,)"),),
        "one absmax for the whole tensor",
    ),
    Mutant(
        "quantize_signed_max",
        "quantize_nf4",
        ((ABSMAX, "absmax = blocks.amax(dim=1)  # (n_blocks,)"),),
        "ABSOLUTE",
    ),
    Mutant(
        "quantize_uniform_levels",
        "quantize_nf4",
        (
            (
                "levels = NF4_LEVELS.to(device=w.device, dtype=w.dtype)  # (16,)",
                "levels = torch.linspace(-1, 1, 16, device=w.device, dtype=w.dtype)",
            ),
        ),
        "evenly spaced",
    ),
    # dequantize_nf4
    Mutant(
        "dequantize_tiled_absmax",
        "dequantize_nf4",
        (
            (
                "values = levels[codes.long()].view(-1, block_size)",
                "values = levels[codes.long()].view(block_size, -1)",
            ),
            ("(values * absmax[:, None]).reshape(shape)", "(values * absmax).reshape(shape)"),
        ),
        "repeated as a whole",
    ),
    Mutant(
        "dequantize_no_scale",
        "dequantize_nf4",
        (("(values * absmax[:, None]).reshape(shape)", "values.reshape(shape)"),),
        "levels themselves",
    ),
    # QLoRALinear
    Mutant(
        "qlora_full_precision",
        "QLoRALinear",
        (
            (
                '        self.register_buffer("absmax", absmax)\n',
                '        self.register_buffer("absmax", absmax)\n'
                '        self.register_buffer("weight", w.clone())\n',
            ),
            (QLORA_W, "weight = self.weight"),
        ),
        "full-precision base weight",
    ),
    Mutant(
        "qlora_scaling_alpha",
        "QLoRALinear",
        ((QLORA_INIT, QLORA_INIT.replace("alpha / r, block_size", "alpha, block_size")),),
        "alpha alone",
    ),
    Mutant(
        "qlora_b_random",
        "QLoRALinear",
        (
            (
                "torch.zeros(self.out_features, r, device=w.device, dtype=w.dtype)",
                "torch.randn(self.out_features, r, device=w.device, dtype=w.dtype)",
            ),
        ),
        "before any training",
    ),
    # cases added with the docstring promises (autograder/peft.py)
    Mutant(
        "lora_a_normal",
        "LoRALinear",
        (
            (
                "nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))\n        self.dropout",
                "nn.init.normal_(self.lora_A, std=0.02)\n        self.dropout",
            ),
        ),
        "not drawn as nn.Linear draws its weight",
    ),
    Mutant(
        "lora_default_rank",
        "LoRALinear",
        (("r: int = 8, alpha: float = 16.0, dropout", "r: int = 4, alpha: float = 16.0, dropout"),),
        "lora_A",
    ),
    Mutant(
        "apply_dot_only",
        "apply_lora",
        ((MATCH, 'any(name.endswith("." + t) for t in target_modules)'),),
        "whole name equals a target",
    ),
    Mutant(
        "apply_copy",
        "apply_lora",
        (
            (
                "    targets = [\n",
                '    model = __import__("copy").deepcopy(model)\n    targets = [\n',
            ),
        ),
        "returns the model it was given",
    ),
    Mutant(
        "adapter_down_zeros",
        "Adapter",
        (
            (
                "nn.init.zeros_(self.up.bias)",
                "nn.init.zeros_(self.up.bias)\n        nn.init.zeros_(self.down.weight)",
            ),
        ),
        "down layer is at zeros",
    ),
    Mutant(
        "prompt_randn",
        "SoftPrompt",
        (("nn.Parameter(0.02 * torch.randn(", "nn.Parameter(torch.randn("),),
        "not drawn from a normal with std 0.02",
    ),
    Mutant(
        "dequantize_uint8_only",
        "dequantize_nf4",
        (("levels[codes.long()]", "levels[codes.view(torch.uint8).long()]"),),
        "int64 codes",
    ),
    Mutant(
        "qlora_a_normal",
        "QLoRALinear",
        (
            (
                "dtype=w.dtype)\n        )\n"
                "        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))\n\n",
                "dtype=w.dtype)\n        )\n        nn.init.normal_(self.lora_A, std=0.02)\n\n",
            ),
        ),
        "not Kaiming-uniform like LoRALinear's",
    ),
    Mutant(
        "qlora_codes_int64",
        "QLoRALinear",
        (('self.register_buffer("codes", codes)', 'self.register_buffer("codes", codes.long())'),),
        "not uint8",
    ),
    Mutant(
        "qlora_default_block_size",
        "QLoRALinear",
        (
            (
                "alpha: float = 16.0, block_size: int = 64",
                "alpha: float = 16.0, block_size: int = 32",
            ),
        ),
        "output with lora_B at zeros",
    ),
)
