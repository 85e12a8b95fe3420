/**
 * Size and start-up cost of the agent next to the floor: a compiled Bun hello-world built with
 * the same flags. What is left above the floor is our own code and dependencies.
 */
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Benchmark, type CommandCost, type Measurement, measureCommands } from "./lib.ts";

const benchmark: Benchmark = {
  title: "Binary size and start-up time",
  description:
    "`dist/cryptpilot-fde` against a Bun hello-world compiled with the same `bun build --compile --minify --bytecode --splitting` flags (the floor for any Bun executable). Medians of interleaved runs; CPU time (user + system) is the steadier figure when the machine is busy.",
  async run(ctx) {
    const hello = join(ctx.tmp, "hello");
    writeFileSync(join(ctx.tmp, "hello.ts"), 'console.log("hello");\n');
    const build = Bun.spawnSync(
      [
        join(ctx.root, "node_modules/.bin/bun"),
        "build",
        "--compile",
        "--minify",
        "--bytecode",
        "--format=esm",
        "--target=bun-linux-x64",
        join(ctx.tmp, "hello.ts"),
        "--outfile",
        hello,
      ],
      { stdout: "ignore", stderr: "pipe" },
    );
    if (build.exitCode !== 0) throw new Error(`building the hello-world failed: ${build.stderr}`);

    // A config directory like a real one: rootfs and delta keys from KBS, dm-verity metadata.
    const config = join(ctx.tmp, "etc");
    mkdirSync(config);
    const kbs = (volume: string) =>
      `[${volume}.encrypt.kbs]\nkbs_url = "https://kbs.example.com:8080"\nkey_uri = "kbs:///default/key/${volume}"\n`;
    writeFileSync(
      join(config, "fde.toml"),
      `[rootfs]\ndelta_location = "disk"\n${kbs("rootfs")}[delta]\n${kbs("delta")}`,
    );
    writeFileSync(join(config, "global.toml"), "[boot]\nverbose = false\n");
    writeFileSync(join(config, "metadata.toml"), `type = 1\nroot_hash = "${"ab".repeat(32)}"\n`);

    ctx.log(`timing ${ctx.runs} runs each`);
    const [floor, version, check] = measureCommands(
      [
        [hello],
        [ctx.binary, "--version"],
        [ctx.binary, "-c", config, "config", "check", "--skip-check-passphrase"],
      ],
      ctx.runs,
    );
    const base = (value: number) => ({ name: "hello-world", value });
    const rows = (label: string, cost: CommandCost, note?: string): Measurement[] => [
      {
        name: `${label}: wall time`,
        value: cost.wallMs,
        unit: "ms",
        baseline: base(floor!.wallMs),
        ...(note ? { note } : {}),
      },
      { name: `${label}: CPU time`, value: cost.cpuMs, unit: "ms", baseline: base(floor!.cpuMs) },
      { name: `${label}: peak RSS`, value: cost.maxRss, unit: "bytes", baseline: base(floor!.maxRss) },
    ];
    return [
      {
        name: "binary size",
        value: statSync(ctx.binary).size,
        unit: "bytes",
        baseline: base(statSync(hello).size),
      },
      ...rows("`--version`", version!),
      ...rows(
        "`config check --skip-check-passphrase`",
        check!,
        "loads and validates fde.toml (two kbs volumes), global.toml and metadata.toml",
      ),
    ];
  },
};

export default benchmark;
