"""make bench-alerts' report: the Markdown block ops/bench/alerts.py prints."""

from __future__ import annotations

from ops.bench.alerts_stack import TARGET_EXTRA_P50_MS, TARGET_RATE


def matching_lines(r: dict) -> list[str]:
    by = r["by_rules"]
    lines = [
        f"Matching: {r['rules']:,} rules of the mix ({r['users']} users x "
        f"{r['rules'] // r['users']}, {r['local_users']} of them on this feed's agency) and "
        f"{r['rules']:,} that match everything, made through the API's functions in "
        f"{r['setup_s']} s; rounds {' / '.join(r['order'])}.",
        "",
        "| rules enabled | path | incidents | deliveries per incident | p50 ms | p99 ms "
        "| mean ms | p50 per round ms |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    names = {"none": "none", "mix": f"{r['rules']:,} (mix)", "all": f"{r['rules']:,} (all match)"}
    for which, f in by.items():
        for path, label in (("sql", "SQL"), ("http", "HTTP")):
            if not f[path]["n"]:
                continue
            per_round = ", ".join(str(v) for v in f["round_p50_ms"][path])
            lines.append(
                f"| {names[which]} | {label} | {f[path]['n']:,} | {f['deliveries_per_incident']} "
                f"| {f[path]['p50_ms']} | {f[path]['p99_ms']} | {f[path]['mean_ms']} "
                f"| {per_round} |"
            )
    return lines


def target_rows(results: list[dict]) -> list[str]:
    rows = []
    for r in results:
        if r["scenario"] == "matching":
            by = r["by_rules"]
            for path, label in (("sql", "select api.create_incident"), ("http", "POST")):
                if "mix" not in by or not by["mix"][path]["n"]:
                    continue
                extra = by["mix"][path]["p50_ms"] - by["none"][path]["p50_ms"]
                ratio = by["mix"][path]["p50_ms"] / by["none"][path]["p50_ms"]
                met = "met" if extra <= TARGET_EXTRA_P50_MS else "not met"
                rows.append(
                    f"| {label}: p50 with {r['rules']:,} rules - with none <= "
                    f"{TARGET_EXTRA_P50_MS:g} ms | +{extra:.2f} ms ({ratio:.2f}x) "
                    f"| {extra / TARGET_EXTRA_P50_MS:.2f} | {met} |"
                )
        elif r["scenario"] == "throughput":
            met = "met" if not r["errors"] and r["per_s"] >= TARGET_RATE else "not met"
            rows.append(
                f"| worker >= {TARGET_RATE:g} webhooks/s, WORKER_CONCURRENCY "
                f"{r['concurrency']} | {r['per_s']:,}/s | {r['per_s'] / TARGET_RATE:.2f} | {met} |"
            )
    return rows


def report(command: str, context: list[str], results: list[dict]) -> None:
    print("### Alerts benchmark\n")
    print(f"`{command}`\n")
    print("| target | measured | measured / target | |")
    print("|---|---:|---:|---|")
    for row in target_rows(results):
        print(row)
    print()
    for r in results:
        if r["scenario"] == "matching":
            print("\n".join(matching_lines(r)))
            print()
    throughput = [r for r in results if r["scenario"] == "throughput"]
    if throughput:
        first = throughput[0]
        print(
            f"Throughput: {first['deliveries']:,} deliveries queued first ({first['incidents']:,} "
            f"incidents x {first['users']} users x {first['channels']} channels, one rule"
            f" each; queued in "
            f"{first['queue_s']} s), then one worker, WORKER_BATCH_SIZE "
            f"{first['batch_size']}; webhooks/s = N / (worker spawned -> the database counts "
            "N delivered); steady = receipts first -> last at the receiver"
        )
        print()
        print("| concurrency | delivered/N | seconds | webhooks/s | first receipt after s "
              "| steady webhooks/s | claims (mean size) | finishes (mean size) "
              "| CPU % of a core |")  # fmt: skip
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in throughput:
            cpu = ", ".join(f"{k} {v}" for k, v in r["cpu_pct_of_a_core"].items())
            print(
                f"| {r['concurrency']} | {r['received']:,}/{r['deliveries']:,} | {r['seconds']} "
                f"| {r['per_s']:,} | {r['first_receipt_s']} | {r['steady_per_s']:,} "
                f"| {r['claims']:,} ({r['mean_claim']}) | {r['finishes']:,} "
                f"({r['mean_finish']}) | {cpu} |"
            )
        print()
        for r in throughput:
            if r["errors"]:
                print(f"concurrency {r['concurrency']}: BROKEN: {r}")
            if r["profile"]:
                print(f"concurrency {r['concurrency']}: worker profile in {r['profile']}")
    for r in results:
        if r["scenario"] == "latency":
            print(
                f"Latency: the worker running (WORKER_CONCURRENCY {r['concurrency']}), "
                f"{r['incidents']} incidents at {r['rate_per_s']:g}/s, one channel; incident "
                "commit (returned to the writer) -> receipt at the receiver"
            )
            print()
            print("| received/incidents | p50 ms | p95 ms | p99 ms | max ms |")
            print("|---:|---:|---:|---:|---:|")
            print(f"| {r['received']}/{r['incidents']} | {r['p50_ms']} | {r['p95_ms']} "
                  f"| {r['p99_ms']} | {r['max_ms']} |")  # fmt: skip
            print()
    for line in context:
        print(f"- {line}")
