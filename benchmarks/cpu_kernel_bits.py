"""Fingerprints of one forward + backward pass and of single kernels, to compare CPU code paths.

    for E in X=1 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=COMPATIBLE; do
        echo "$E: $(env OMP_NUM_THREADS=2 $E python benchmarks/cpu_kernel_bits.py)"; done

Prints sha256 prefixes of: a dense and a subspace GPT's logits and gradients on one batch, a
64 x 256 x 64 matmul, a softmax, a layer norm and a row sum (all float32). Equal prefixes under
two environments = the same bits (see benchmarks/results/reproducibility.md).
"""

import hashlib

import torch

from tokenbound.models import GPTConfig, build_model


def h(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().numpy().tobytes()).hexdigest()[:10]


def main() -> str:
    out = []
    g = torch.Generator().manual_seed(0)
    for sub in (None, 4000):
        cfg = GPTConfig(vocab_size=256, context_len=64, n_layer=2, n_head=2, d_model=64,
                        subspace_dim=sub)
        m = build_model(cfg).train()
        x = torch.randint(0, 256, (8, 64), generator=g)
        with torch.no_grad():
            for p in m.trainable_parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=g))
        logits = m(x)  # (8, 64, 256)
        torch.nn.functional.cross_entropy(logits.reshape(-1, 256),
                                          x.roll(-1, 1).reshape(-1)).backward()
        grads = torch.cat([p.grad.reshape(-1) for p in m.trainable_parameters()])
        out.append(f"{'subspace' if sub else 'dense'} logits {h(logits)} grads {h(grads)}")
    a, b = torch.randn(64, 256, generator=g), torch.randn(256, 64, generator=g)
    out.append(f"mm {h(a @ b)} softmax {h(torch.softmax(a, -1))} "
               f"layernorm {h(torch.nn.functional.layer_norm(a, (256,)))} sum {h(a.sum(1))}")
    return " | ".join(out)


if __name__ == "__main__":
    print(main())
