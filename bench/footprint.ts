/**
 * The disk footprint of a converted image, per architecture, Debian release and initrd
 * compression: for each base image in vm-test/cache (the newest per suite and architecture; none
 * is built here), the guest's own dracut builds convert's initrd (GRUB mode) and UKI (--uki) with
 * lz4 (the module's default) and with zstd (chosen the way a user chooses it: compress="zstd" in
 * the image's /etc/dracut.conf.d/). The agent and module go in with convert's own functions
 * (installAgent, moveBootOut, runDracut, dracutArgs); the sizes convert would need come from
 * convert's own arithmetic (stagedBytes + minBootPartSize, ukiEspSize). arm64 guests' dracut runs
 * under qemu-user (binfmt_misc), with dist/cryptpilot-fde-arm64 (`make build-arm64`) inside.
 *
 * `make bench-footprint` runs only this; docs/install.md ("Disk footprint") quotes its table.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AMD64, ARM64, type Arch, systemdStubPath } from "../agent/src/arch.ts";
import { MODULE_FILES } from "../agent/src/convert/assets.ts";
import { Cleanup } from "../agent/src/convert/cleanup.ts";
import {
  builtInitrdCompression,
  minBootPartSize,
  stagedBytes,
  ukiEspSize,
} from "../agent/src/convert/footprint.ts";
import {
  type DracutJob,
  findKernels,
  installAgent,
  mount,
  moveBootOut,
  runDracut,
} from "../agent/src/convert/guest.ts";
import { MiB } from "../agent/src/convert/layout.ts";
import { partitionByName } from "../vm-test/lib/disk.ts";
import { sh } from "../vm-test/lib/proc.ts";
import type { BenchContext, Benchmark, Measurement } from "./lib.ts";

/** The base images measured, in table order; a missing one is a visible "skipped" row. */
const WANTED: readonly { suite: string; arch: Arch }[] = [
  { suite: "bookworm", arch: AMD64 },
  { suite: "trixie", arch: AMD64 },
  { suite: "bookworm", arch: ARM64 },
  { suite: "trixie", arch: ARM64 },
];
export const COMPRESSIONS = ["lz4", "zstd"] as const;
type Compression = (typeof COMPRESSIONS)[number];

/** How a user picks zstd: the image's dracut configuration, which the module keeps (module-setup.sh). */
const ZSTD_CONF = "etc/dracut.conf.d/90-cryptpilot-footprint.conf";
/** Free space added to the root copy: the base images' roots are sized to their contents, not the agent's 110 MB. */
const ROOT_GROWTH = "+512M";
/** The configuration the initrds carry: a KBS provider, so the initrd has the network (the larger, usual case). */
const FDE_TOML = `[rootfs.encrypt.kbs]
kbs_url = "https://kbs.example.com:8080"
key_uri = "kbs:///default/cryptpilot/rootfs"

[delta.encrypt.kbs]
kbs_url = "https://kbs.example.com:8080"
key_uri = "kbs:///default/cryptpilot/delta"
`;
const METADATA_TOML = `type = 1\nroot_hash = "${"0".repeat(64)}"\n`;

/** vm-test/cache/base-<suite>-<16 hex> (amd64) or base-<suite>-arm64-<16 hex>; an `arch` file wins. */
export function findBaseImages(cache: string): Map<string, string> {
  const newest = new Map<string, { dir: string; mtime: number }>();
  const names = existsSync(cache) ? readdirSync(cache) : [];
  for (const name of names) {
    const m = /^base-([a-z]+)-(?:(arm64)-)?[0-9a-f]{16}$/.exec(name);
    const dir = join(cache, name);
    if (!m || !existsSync(join(dir, "done"))) continue;
    const archFile = join(dir, "arch");
    const arch = existsSync(archFile) ? readFileSync(archFile, "utf8").trim() : (m[2] ?? "amd64");
    const key = `${m[1]}/${arch}`;
    const mtime = statSync(join(dir, "done")).mtimeMs;
    if ((newest.get(key)?.mtime ?? -1) < mtime) newest.set(key, { dir, mtime });
  }
  return new Map([...newest].map(([k, v]) => [k, v.dir]));
}

interface Row {
  arch: string;
  suite: string;
  kernel: string;
  compression: Compression;
  /** What the built images really are (builtInitrdCompression): proves the configuration took. */
  initrdGot: string;
  uki: string;
  initrdBytes: number;
  ukiBytes: number;
  /** minBootPartSize of what convert stages in /boot (kernel, initrd, GRUB files). */
  minBoot: number;
  /** ukiEspSize of the UKI: the ESP convert --uki creates. */
  minEsp: number;
  dracutSeconds: number;
}

/** One image: its root copied and grown, the agent installed, dracut run per compression and mode. */
async function measureImage(ctx: BenchContext, dir: string, suite: string, arch: Arch): Promise<Row[]> {
  const disk = join(dir, "disk.raw");
  const part = await partitionByName(disk, "root");
  if (!part) throw new Error(`${disk} has no partition named "root"`);
  const work = join(ctx.tmp, `${suite}-${arch.debian}`);
  mkdirSync(work, { recursive: true });
  const rootImg = join(work, "root.img");
  await sh([
    "dd",
    `if=${disk}`,
    `of=${rootImg}`,
    "bs=4M",
    `skip=${part.offset}`,
    `count=${part.size}`,
    "iflag=skip_bytes,count_bytes",
    "conv=sparse",
    "status=none",
  ]);
  await sh(["truncate", "-s", ROOT_GROWTH, rootImg]);
  await sh(["e2fsck", "-fp", rootImg]);
  await sh(["resize2fs", "-f", rootImg]);
  const cleanup = new Cleanup();
  const root = join(work, "root");
  const staging = join(work, "boot");
  const cfg = join(work, "etc-cryptpilot");
  const stubDir = join(work, "stub");
  mkdirSync(cfg, { recursive: true });
  mkdirSync(stubDir, { recursive: true });
  writeFileSync(join(cfg, "fde.toml"), FDE_TOML);
  writeFileSync(join(cfg, "metadata.toml"), METADATA_TOML);
  const agentBinary = join(ctx.root, arch === ARM64 ? "dist/cryptpilot-fde-arm64" : "dist/cryptpilot-fde");
  const rows: Row[] = [];
  try {
    await mount(cleanup, rootImg, root, ["-o", "loop"], "guest");
    await installAgent(root, { moduleFiles: MODULE_FILES, agentBinary });
    await moveBootOut(root, staging);
    const { kernels } = await findKernels(root, staging);
    const kernel = kernels.at(-1);
    if (!kernel) throw new Error(`${suite} ${arch.debian}: no kernel with modules in the image's /boot`);
    const stub = systemdStubPath(arch);
    if (!existsSync(join(root, stub.slice(1))))
      throw new Error(`${suite} ${arch.debian}: the image has no ${stub} (systemd-boot-efi) for the UKI`);
    for (const compression of COMPRESSIONS) {
      const conf = join(root, ZSTD_CONF);
      if (compression === "zstd") writeFileSync(conf, 'compress="zstd"\n');
      else rmSync(conf, { force: true });
      const grub: DracutJob = { kernel, output: `/boot/${kernel.initrd}` };
      const uki: DracutJob = {
        kernel,
        output: "/run/cryptpilot-stub/uki.efi",
        uki: { stub, cmdline: "root=/dev/mapper/rootfs ro rd.lvm=0 rd.luks=0" },
      };
      ctx.log(`${suite} ${arch.debian} ${compression}: dracut (initrd, then UKI) for ${kernel.version}`);
      const started = performance.now();
      await runDracut(
        cleanup,
        root,
        { boot: staging, config: cfg, extra: { host: stubDir, guest: "run/cryptpilot-stub" } },
        [grub, uki],
      );
      const initrdFile = join(staging, kernel.initrd);
      const ukiFile = join(stubDir, "uki.efi");
      const ukiBytes = statSync(ukiFile).size;
      rows.push({
        arch: arch.debian,
        suite,
        kernel: kernel.version,
        compression,
        initrdGot: await builtInitrdCompression(initrdFile, false),
        uki: await builtInitrdCompression(ukiFile, true),
        initrdBytes: statSync(initrdFile).size,
        ukiBytes,
        minBoot: minBootPartSize(await stagedBytes(staging)),
        minEsp: ukiEspSize(ukiBytes),
        dracutSeconds: (performance.now() - started) / 1000,
      });
    }
  } finally {
    await cleanup.runAll();
    rmSync(work, { recursive: true, force: true });
  }
  return rows;
}

const mib = (n: number) => (n / MiB).toFixed(1);

function table(rows: Row[], skipped: string[]): string {
  return [
    "| arch | suite (kernel) | compression (built) | initrd MiB | UKI MiB | smallest /boot (GRUB mode) | smallest ESP (--uki) | dracut, both images |",
    "|---|---|---|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${r.arch} | ${r.suite} (${r.kernel}) | ${r.compression} (initrd ${r.initrdGot}, UKI ${r.uki}) | ${mib(r.initrdBytes)} | ${mib(r.ukiBytes)} | ${r.minBoot / MiB} MiB | ${r.minEsp / MiB} MiB | ${r.dracutSeconds.toFixed(0)} s |`,
    ),
    ...skipped.map((s) => `| ${s} | | | | | | |`),
  ].join("\n");
}

const bench: Benchmark = {
  title: "Disk footprint: initrd and UKI sizes, smallest /boot and ESP",
  description:
    "Per base image in vm-test/cache (Debian 12 and 13, amd64 and arm64; arm64's dracut under qemu-user), the guest's dracut builds convert's initrd and UKI (KBS provider, so with the network) with lz4, the module's default, and with zstd from the image's dracut.conf.d. Ours: the zstd initrd; baseline: the lz4 one. The table gives the smallest /boot convert accepts (GRUB mode, one kernel: minBootPartSize of the staged /boot) and the ESP convert --uki creates (ukiEspSize: the UKI plus a quarter for a newer kernel plus 32 MiB); GRUB mode keeps the source's ESP.",
  skip() {
    if (process.getuid?.() !== 0) return "needs root (loop mounts, chroot dracut)";
    return undefined;
  },
  async run(ctx) {
    const found = findBaseImages(join(ctx.root, "vm-test/cache"));
    const rows: Row[] = [];
    const skipped: string[] = [];
    for (const { suite, arch } of WANTED) {
      const dir = found.get(`${suite}/${arch.debian}`);
      const binary = join(ctx.root, arch === ARM64 ? "dist/cryptpilot-fde-arm64" : "dist/cryptpilot-fde");
      const why = !dir
        ? `no ${suite} ${arch.debian} base image in vm-test/cache (vm-test builds it)`
        : !existsSync(binary)
          ? `no ${binary} (make build${arch === ARM64 ? "-arm64" : ""})`
          : arch !== AMD64 && !existsSync(`/proc/sys/fs/binfmt_misc/qemu-${arch.uname}`)
            ? `no binfmt_misc entry qemu-${arch.uname} (qemu-user-static) to run its dracut`
            : undefined;
      if (why || !dir) {
        ctx.log(`skipped ${suite} ${arch.debian}: ${why}`);
        skipped.push(`${arch.debian} | ${suite}: skipped, ${why}`);
        continue;
      }
      ctx.log(`${suite} ${arch.debian}: ${dir}`);
      rows.push(...(await measureImage(ctx, dir, suite, arch)));
    }
    ctx.details(table(rows, skipped));
    const measurements: Measurement[] = [];
    for (const zstd of rows.filter((r) => r.compression === "zstd")) {
      const lz4 = rows.find((r) => r.compression === "lz4" && r.arch === zstd.arch && r.suite === zstd.suite);
      if (!lz4) continue;
      measurements.push({
        name: `initrd, ${zstd.arch} ${zstd.suite} (zstd)`,
        value: zstd.initrdBytes,
        unit: "bytes",
        baseline: { name: "lz4", value: lz4.initrdBytes },
        note: `UKI ${mib(zstd.ukiBytes)} vs ${mib(lz4.ukiBytes)} MiB; smallest /boot ${zstd.minBoot / MiB} vs ${lz4.minBoot / MiB} MiB; ESP for --uki ${zstd.minEsp / MiB} vs ${lz4.minEsp / MiB} MiB`,
      });
    }
    return measurements;
  },
};

export default bench;
