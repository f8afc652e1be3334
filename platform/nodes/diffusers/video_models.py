"""The open video models this node serves, and how each one is built.

One entry per catalog slug: which diffusers pipeline classes run it, the sizes and frame
counts it can make, its default steps and guidance, and where its weights come from.
`build(spec, tiny=True)` makes the same pipelines from small configs with random weights
in memory (the way diffusers' own pipeline tests do), so the real diffusers code runs end
to end on a CPU with nothing downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

CONFIGS = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class ModelSpec:
    slug: str
    family: str  # "wan" or "ltx": how latents are laid out and normalised
    repo_id: str  # the diffusers-format repository in the Hugging Face cache
    # Which pipelines to build: "t2v" (text only), "i2v" (a first frame), "flf" (+ last frame).
    modes: tuple[str, ...]
    size_multiple: int  # width and height must be multiples of this
    frame_step: int  # frame counts are frame_step * k + 1 (Wan 4, LTX 8)
    max_frames: int
    default_fps: int
    default_steps: int
    default_guidance: float
    native_sizes: tuple[tuple[int, int], ...] = ()
    # Passed to the pipelines' constructors (Wan 2.2 TI2V conditions by timestep).
    pipeline_options: dict[str, Any] = field(default_factory=dict)

    def frames_for(self, seconds: float, fps: int) -> tuple[int, int]:
        """(frames to deliver, frames to generate): the model's rule rounds up, we trim."""
        wanted = max(1, round(seconds * fps))
        steps = -(-(wanted - 1) // self.frame_step)
        return wanted, steps * self.frame_step + 1

    def size_problem(self, width: int, height: int) -> str | None:
        if width % self.size_multiple or height % self.size_multiple:
            return (
                f"{self.slug} makes sizes whose width and height are multiples of "
                f"{self.size_multiple}; {width}x{height} is not"
            )
        return None


SPECS: dict[str, ModelSpec] = {
    spec.slug: spec
    for spec in (
        ModelSpec(
            slug="wan2.1-t2v-1.3b",
            family="wan",
            repo_id="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
            modes=("t2v",),
            size_multiple=16,
            frame_step=4,
            max_frames=161,
            default_fps=16,
            default_steps=50,
            default_guidance=5.0,
            native_sizes=((832, 480), (480, 832)),
        ),
        ModelSpec(
            slug="wan2.1-i2v-14b",
            family="wan",
            repo_id="Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
            modes=("i2v", "flf"),
            size_multiple=16,
            frame_step=4,
            max_frames=161,
            default_fps=16,
            default_steps=40,
            default_guidance=5.0,
            native_sizes=((832, 480), (480, 832), (1280, 720), (720, 1280)),
        ),
        ModelSpec(
            slug="wan2.2-ti2v-5b",
            family="wan",
            repo_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
            modes=("t2v", "i2v"),
            size_multiple=32,
            frame_step=4,
            max_frames=241,
            default_fps=24,
            default_steps=50,
            default_guidance=5.0,
            native_sizes=((1280, 704), (704, 1280)),
            pipeline_options={"expand_timesteps": True},
        ),
        ModelSpec(
            slug="ltx-video",
            family="ltx",
            repo_id="Lightricks/LTX-Video",
            modes=("t2v", "i2v"),
            size_multiple=32,
            frame_step=8,
            max_frames=257,
            default_fps=24,
            default_steps=50,
            default_guidance=3.0,
            native_sizes=((768, 512), (512, 768), (1216, 704), (704, 1216)),
        ),
    )
}


# The demo catalog's name for LTX-Video.
SPECS["ltx-video-2b"] = SPECS["ltx-video"]


def spec_for(slug: str) -> ModelSpec:
    try:
        return SPECS[slug]
    except KeyError:
        raise ValueError(
            f"unknown model {slug!r}; this node serves {', '.join(sorted(SPECS))}"
        ) from None


@dataclass
class Loaded:
    """The pipelines of one model, sharing one set of components."""

    spec: ModelSpec
    pipes: dict[str, Any]  # "t2v" / "i2v" -> pipeline (i2v also serves first+last frame)
    device: torch.device
    dtype: torch.dtype

    @property
    def any_pipe(self) -> Any:
        return next(iter(self.pipes.values()))


# --- tiny mode: small configs, random weights, an in-memory tokenizer ----------------------


def tiny_tokenizer():
    """A T5-style fast tokenizer built in memory: byte-level BPE with no merges.

    Any text tokenizes (one token per byte), with `</s>` appended and `<pad>` padding,
    which is all the pipelines ask of a tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate(specials + alphabet)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=512,
    )


TINY_TEXT_DIM = 32
TINY_CLIP_TOKENS = (32 // 8) ** 2 + 1  # a 32 px image in 8 px patches, plus the class token


def _tiny_text_encoder(family: str, vocab_size: int):
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    options = dict(
        vocab_size=vocab_size,
        d_model=TINY_TEXT_DIM,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    # Wan's real text encoder is UMT5; LTX's is T5.
    if family == "wan":
        return UMT5EncoderModel(UMT5Config(**options)).eval()
    return T5EncoderModel(T5Config(**options)).eval()


def _build_tiny(spec: ModelSpec) -> dict[str, Any]:
    """Components of the model's pipelines at toy size (seeded: the same every start)."""
    import diffusers

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    text_encoder = _tiny_text_encoder(spec.family, len(tokenizer))
    if spec.family == "ltx":
        torch.manual_seed(0)
        transformer = diffusers.LTXVideoTransformer3DModel(
            in_channels=8,
            out_channels=8,
            patch_size=1,
            patch_size_t=1,
            num_attention_heads=4,
            attention_head_dim=8,
            cross_attention_dim=32,
            num_layers=2,  # First Block Cache needs a first block and the rest
            caption_channels=TINY_TEXT_DIM,
        )
        torch.manual_seed(0)
        vae = diffusers.AutoencoderKLLTXVideo(
            in_channels=3,
            out_channels=3,
            latent_channels=8,
            block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1),
            spatio_temporal_scaling=(True, True, False, False),
            decoder_spatio_temporal_scaling=(True, True, False, False),
            decoder_inject_noise=(False, False, False, False, False),
            upsample_residual=(False, False, False, False),
            upsample_factor=(1, 1, 1, 1),
            timestep_conditioning=False,
            patch_size=1,
            patch_size_t=1,
            encoder_causal=True,
            decoder_causal=False,
        )
        vae.use_framewise_encoding = False
        vae.use_framewise_decoding = False
        return {
            "transformer": transformer,
            "vae": vae,
            "scheduler": diffusers.FlowMatchEulerDiscreteScheduler(),
            "text_encoder": text_encoder,
            "tokenizer": tokenizer,
        }

    wan22 = spec.slug.startswith("wan2.2")
    torch.manual_seed(0)
    if wan22:
        # Wan 2.2's 5B model: a 48-channel VAE that compresses 16x in space.
        vae = diffusers.AutoencoderKLWan(
            base_dim=3,
            z_dim=48,
            in_channels=12,
            out_channels=12,
            is_residual=True,
            patch_size=2,
            latents_mean=[0.0] * 48,
            latents_std=[1.0] * 48,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            scale_factor_spatial=16,
            scale_factor_temporal=4,
            temperal_downsample=[False, True, True],
        )
        channels = (48, 48)
    else:
        vae = diffusers.AutoencoderKLWan(
            base_dim=3,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
        )
        channels = (36, 16) if "i2v" in spec.modes and "t2v" not in spec.modes else (16, 16)
    torch.manual_seed(0)
    transformer = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=channels[0],
        out_channels=channels[1],
        text_dim=TINY_TEXT_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024,  # room for 480p and 720p latents
        image_dim=4 if channels[0] == 36 else None,
        # First+last frame: both frames' CLIP tokens side by side, with learnt positions.
        pos_embed_seq_len=2 * TINY_CLIP_TOKENS if "flf" in spec.modes else None,
    )
    components: dict[str, Any] = {
        "transformer": transformer,
        "vae": vae,
        "scheduler": (
            diffusers.UniPCMultistepScheduler(
                prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
            )
            if wan22
            else diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0)
        ),
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
    }
    if channels[0] == 36:
        # Wan 2.1 image-to-video also embeds the frame(s) with CLIP.
        from transformers import (
            CLIPImageProcessor,
            CLIPVisionConfig,
            CLIPVisionModelWithProjection,
        )

        torch.manual_seed(0)
        components["image_encoder"] = CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=4,
                projection_dim=4,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=32,
                intermediate_size=16,
                patch_size=8,
            )
        ).eval()
        components["image_processor"] = CLIPImageProcessor(crop_size=32, size=32)
    return components


# --- real weights ---------------------------------------------------------------------------


def _load_real(spec: ModelSpec, dtype: torch.dtype) -> Any:
    """The model's first pipeline from MODEL_PATH or the local Hugging Face cache only."""
    import diffusers

    source = os.environ.get("MODEL_PATH") or spec.repo_id
    first = pipeline_classes(spec)[spec.modes[0]]
    options: dict[str, Any] = {"torch_dtype": dtype, "local_files_only": True}
    if spec.family == "wan":
        # Wan's VAE decodes noticeably better in float32; it is small next to the transformer.
        options["vae"] = diffusers.AutoencoderKLWan.from_pretrained(
            source, subfolder="vae", torch_dtype=torch.float32, local_files_only=True
        )
    return getattr(diffusers, first).from_pretrained(source, **options)


def pipeline_classes(spec: ModelSpec) -> dict[str, str]:
    if spec.family == "ltx":
        return {"t2v": "LTXPipeline", "i2v": "LTXImageToVideoPipeline"}
    i2v = "WanImageToVideoPipeline"
    return {"t2v": "WanPipeline", "i2v": i2v, "flf": i2v}


def first_last_frame_pipeline():
    """WanImageToVideoPipeline for first+last frame (FLF2V) weights, also given one frame.

    FLF2V's transformer reads the CLIP tokens of two frames side by side; diffusers encodes
    only one when no last frame is given (and refuses image embeddings beside an image),
    so a lone first frame is encoded twice here. Only the first frame is pinned in latent
    space; the model is free to end where the prompt takes it.
    """
    from diffusers import WanImageToVideoPipeline

    class FirstLastFramePipeline(WanImageToVideoPipeline):
        def encode_image(self, image, device=None):
            if not isinstance(image, list):
                image = [image, image]
            return super().encode_image(image, device)

    return FirstLastFramePipeline


def pipelines_from(spec: ModelSpec, components: dict[str, Any]) -> dict[str, Any]:
    """One pipeline per mode over the same components (no weights copied)."""
    import diffusers

    classes = pipeline_classes(spec)
    pipes: dict[str, Any] = {}
    for mode in spec.modes:
        name = classes[mode]
        key = "i2v" if mode == "flf" else mode
        if key in pipes:
            continue
        cls = getattr(diffusers, name)
        if mode == "flf" or (key == "i2v" and "flf" in spec.modes):
            cls = first_last_frame_pipeline()
        accepted = set(cls._get_signature_keys(cls)[0]) | set(cls._get_signature_keys(cls)[1])
        parts = {k: v for k, v in components.items() if k in accepted}
        parts.update({k: v for k, v in spec.pipeline_options.items() if k in accepted})
        pipes[key] = cls(**parts)
    return pipes


def build(spec: ModelSpec, *, tiny: bool, device: torch.device, dtype: torch.dtype) -> Loaded:
    if tiny:
        components = _build_tiny(spec)
    else:
        components = dict(_load_real(spec, dtype).components)
    pipes = pipelines_from(spec, components)
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    return Loaded(spec=spec, pipes=pipes, device=device, dtype=dtype)
