# Sparse autoencoders per checkpoint: one TopK SAE per checkpoint on one
# layer's token activations over a text corpus; features classified by
# language and granularity; features matched across checkpoints and seeds.


rule sae_corpus:
    input:
        # The demo's stories come from the world; a real corpus is a file.
        source=(
            LEXICON if config["sae"]["corpus"]["source"] == "toyworld" else user_file(config["sae"]["corpus"]["path"])
        ),
    output:
        STIMULI.format(stimset=study.SAE_CORPUS),
    log:
        log_path("sae_corpus"),
    benchmark:
        benchmark_path("sae_corpus")
    conda:
        TABLES_ENV
    params:
        world=config["world"],
        corpus=config["sae"]["corpus"],
    script:
        "../scripts/sae_corpus.py"


rule sae:
    input:
        activations=ACTIVATIONS.format(model="{model}", step="{step}", stimset=study.SAE_CORPUS),
        stimuli=STIMULI.format(stimset=study.SAE_CORPUS),
        checkpoint=CHECKPOINT,
        dictionary=user_file(config["sae"]["dictionary"]) if config["sae"]["dictionary"] else [],
    output:
        sae=SAE.replace("{file}", "sae.safetensors"),
        metrics=SAE.replace("{file}", "metrics.parquet"),
        history=SAE.replace("{file}", "history.tsv"),
        features=SAE.replace("{file}", "features.parquet"),
        contexts=SAE.replace("{file}", "contexts.parquet"),
        sheet_csv=SAE.replace("{file}", "labelling_sheet.csv"),
        sheet_html=SAE.replace("{file}", "features.html"),
    log:
        log_path("sae", "{model}/{step}/seed{seed}"),
    benchmark:
        benchmark_path("sae", "{model}/{step}/seed{seed}")
    conda:
        TORCH_ENV
    threads: threads("sae")
    params:
        sae=config["sae"],
        tokens=tokens,
        trust_remote_code=lambda wc: model_config(wc.model).get("trust_remote_code", False),
        device=config["device"],
    script:
        "../scripts/sae.py"


# Each SAE also in the on-disk layout sae-lens loads, for SAEBench, SAEDashboard
# and Neuronpedia; a rule of its own, so the SAE's own outputs stay as they are.
rule sae_export:
    input:
        sae=SAE.replace("{file}", "sae.safetensors"),
    output:
        config=SAE_SAELENS.replace("{file}", "cfg.json"),
        weights=SAE_SAELENS.replace("{file}", "sae_weights.safetensors"),
    log:
        log_path("sae_export", "{model}/{step}/seed{seed}"),
    benchmark:
        benchmark_path("sae_export", "{model}/{step}/seed{seed}")
    conda:
        TORCH_ENV
    params:
        # Only what the export names, so a new checkpoint in the model's list reruns no old export.
        model=lambda wc: export_model_fields(model_config(wc.model)),
    script:
        "../scripts/sae_export.py"


rule aggregate_sae:
    input:
        metrics=sae_files("metrics.parquet"),
        features=sae_files("features.parquet"),
    output:
        metrics=table("sae"),
        features=table("sae_features"),
    log:
        log_path("aggregate_sae"),
    benchmark:
        benchmark_path("aggregate_sae")
    conda:
        TABLES_ENV
    script:
        "../scripts/concat_tables.py"


rule sae_matching:
    input:
        saes=sae_files("sae.safetensors"),
        features=sae_files("features.parquet"),
    output:
        table("sae_matching"),
    log:
        log_path("sae_matching"),
    benchmark:
        benchmark_path("sae_matching")
    conda:
        TORCH_ENV
    threads: threads("sae_matching")
    params:
        threshold=config["sae"]["match_threshold"],
    script:
        "../scripts/sae_matching.py"


rule plot_sae:
    input:
        metrics=table("sae"),
        matching=table("sae_matching"),
        contexts=sae_card_files("contexts.parquet"),
        features=sae_card_files("features.parquet"),
    output:
        language=[report(f, caption="../report/sae_language.rst", category="SAE") for f in figures("sae_language")],
        granularity=[
            report(f, caption="../report/sae_granularity.rst", category="SAE") for f in figures("sae_granularity")
        ],
        quality=[report(f, caption="../report/sae_metrics.rst", category="SAE") for f in figures("sae_metrics")],
        matching=[report(f, caption="../report/sae_matching.rst", category="SAE") for f in figures("sae_matching")],
        cards=[
            report(f, caption="../report/sae_feature_cards.rst", category="SAE") for f in figures("sae_feature_cards")
        ],
    log:
        log_path("plots/sae"),
    benchmark:
        benchmark_path("plots/sae")
    conda:
        FIGURES_ENV
    params:
        plots=config["plots"],
        seed=config["sae"]["seed"],
        steps=study.sae_card_steps(config),
    script:
        "../scripts/sae_plot.py"
