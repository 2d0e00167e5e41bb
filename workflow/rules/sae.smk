# Sparse autoencoders per checkpoint (METHODS §8): one TopK SAE per checkpoint
# on one layer's token activations over a text corpus; features classified by
# language and granularity; features matched across checkpoints and seeds.


rule sae_corpus:
    input:
        # The demo's stories come from the world; a real corpus is a file.
        source=(
            f"{R}/world/lexicon.parquet"
            if config["sae"]["corpus"]["source"] == "toyworld"
            else user_file(config["sae"]["corpus"]["path"])
        ),
    output:
        f"{R}/stimuli/{SAE_CORPUS}.parquet",
    params:
        world=config["world"],
        corpus=config["sae"]["corpus"],
    log:
        f"{R}/logs/sae_corpus.log",
    benchmark:
        f"{R}/benchmarks/sae_corpus.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/sae_corpus.py"


rule sae:
    input:
        activations=f"{R}/activations/{{model}}/{{step}}/{SAE_CORPUS}.safetensors",
        stimuli=f"{R}/stimuli/{SAE_CORPUS}.parquet",
        checkpoint=f"{R}/checkpoints/{{model}}/{{step}}",
        dictionary=user_file(config["sae"]["dictionary"]) if config["sae"]["dictionary"] else [],
    output:
        sae=f"{R}/sae/{{model}}/{{step}}/seed{{seed}}/sae.safetensors",
        metrics=f"{R}/sae/{{model}}/{{step}}/seed{{seed}}/metrics.parquet",
        history=f"{R}/sae/{{model}}/{{step}}/seed{{seed}}/history.tsv",
        features=f"{R}/sae/{{model}}/{{step}}/seed{{seed}}/features.parquet",
        contexts=f"{R}/sae/{{model}}/{{step}}/seed{{seed}}/contexts.parquet",
        sheet_csv=f"{R}/sae/{{model}}/{{step}}/seed{{seed}}/labelling_sheet.csv",
        sheet_html=f"{R}/sae/{{model}}/{{step}}/seed{{seed}}/features.html",
    wildcard_constraints:
        seed=r"\d+",
    params:
        sae=config["sae"],
        tokens=lambda wc: tokens_for(model_entry(config, wc.model), wc.step),
        trust_remote_code=lambda wc: model_entry(config, wc.model).get("trust_remote_code", False),
        device=config["device"],
    threads: threads("sae")
    log:
        f"{R}/logs/sae/{{model}}/{{step}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/sae/{{model}}/{{step}}/seed{{seed}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=120,
    script:
        "../scripts/sae.py"


rule aggregate_sae:
    input:
        metrics=sae_files("metrics.parquet"),
        features=sae_files("features.parquet"),
    output:
        metrics=f"{R}/tables/sae.parquet",
        features=f"{R}/tables/sae_features.parquet",
    log:
        f"{R}/logs/aggregate_sae.log",
    benchmark:
        f"{R}/benchmarks/aggregate_sae.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/concat_tables.py"


rule sae_matching:
    input:
        saes=sae_files("sae.safetensors"),
        features=sae_files("features.parquet"),
    output:
        f"{R}/tables/sae_matching.parquet",
    params:
        threshold=config["sae"]["match_threshold"],
    log:
        f"{R}/logs/sae_matching.log",
    benchmark:
        f"{R}/benchmarks/sae_matching.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/sae_matching.py"


rule plot_sae:
    input:
        metrics=f"{R}/tables/sae.parquet",
        matching=f"{R}/tables/sae_matching.parquet",
        contexts=sae_card_files("contexts.parquet"),
        features=sae_card_files("features.parquet"),
    output:
        language=[report(f, caption="../report/sae_language.rst", category="SAE")
                  for f in figure_files("sae_language")],
        granularity=[report(f, caption="../report/sae_granularity.rst", category="SAE")
                     for f in figure_files("sae_granularity")],
        quality=[report(f, caption="../report/sae_metrics.rst", category="SAE")
                 for f in figure_files("sae_metrics")],
        matching=[report(f, caption="../report/sae_matching.rst", category="SAE")
                  for f in figure_files("sae_matching")],
        cards=[report(f, caption="../report/sae_feature_cards.rst", category="SAE")
               for f in figure_files("sae_feature_cards")],
    params:
        plots=config["plots"],
        seed=config["sae"]["seed"],
        steps=sae_card_steps(),
    log:
        f"{R}/logs/plots/sae.log",
    benchmark:
        f"{R}/benchmarks/plots/sae.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/sae_plot.py"
