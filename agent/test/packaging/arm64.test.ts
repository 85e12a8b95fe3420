/**
 * The cross-compiled aarch64 executable (`make build-arm64`, dist/cryptpilot-fde-arm64) under
 * qemu-user: --version, config check with a real key fetch (exec provider), show-reference-value
 * on an x86-64 disk image (same JSON as this host's build), and a TPM2 seal (tpm2 enroll) and
 * unseal (the tpm2 provider through config check) against swtpm. The arm64 glibc and tpm2-tss
 * come from Debian's arm64 packages (apt-get download with a private apt state, so the host's
 * dpkg architectures are untouched), unpacked into a git-ignored cache that QEMU_LD_PREFIX points
 * at. Skipped, saying why, without qemu-user-static, apt or network.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import pkg from "../../../package.json" with { type: "json" };
import { diskImage, ESP_GPT, ext4Image, fatImage, LINUX_GPT } from "../../testkit/images.ts";
import { sh, tempDir } from "../../testkit/sh.ts";
import { hasSwtpm, type Swtpm, startSwtpm, tpm2Tool } from "../../testkit/swtpm.ts";
import { luksImage, RECOVERY, VOLUME_KEY } from "../providers/fixtures/tpm2.ts";
import { debianBoot } from "../refvalue/debian.ts";

const TOP = resolve(import.meta.dir, "../../..");
const ARM64_BIN = join(TOP, "dist/cryptpilot-fde-arm64");
const MAIN = join(TOP, "agent/src/main.ts");
const CACHE = join(import.meta.dir, "cache");
/** The arm64 Debian packages the executable loads: glibc, and tpm2-tss for the TPM (dlopen). */
const ARM64_DEBS = [
  "libc6",
  "libtss2-esys-3.0.2-0",
  "libtss2-sys1",
  "libtss2-mu0",
  "libtss2-rc0",
  "libtss2-tctildr0",
  "libtss2-tcti-swtpm0",
  "libtss2-tcti-device0",
  "libssl3",
];
/** Each run under TCG emulation starts a whole JavaScript runtime: seconds on a loaded 2-core box. */
setDefaultTimeout(60_000);

const qemu = Bun.which("qemu-aarch64-static") ?? Bun.which("qemu-aarch64");
const why = !qemu
  ? "qemu-user-static not installed (.ci/apt-packages)"
  : !Bun.which("apt-get")
    ? "apt-get not available"
    : undefined;
if (why) console.warn(`skipping the arm64 tests: ${why}`);

/** An aarch64 root with the libraries above, made once and kept in the cache. */
function arm64Sysroot(): string {
  const root = join(CACHE, "arm64-sysroot");
  if (existsSync(join(root, "usr/lib/aarch64-linux-gnu/libtss2-esys.so.0"))) return root;
  const apt = join(CACHE, "arm64-apt");
  const debs = join(apt, "debs");
  for (const d of ["lists/partial", "archives/partial", "debs"]) mkdirSync(join(apt, d), { recursive: true });
  // Only arm64, only for these commands: the host's /etc/apt, dpkg status and architectures stay as they are.
  const opts = [
    `-oDir::State::Lists=${join(apt, "lists")}`,
    `-oDir::Cache=${apt}`,
    "-oDir::State::status=/dev/null",
    "-oAPT::Architecture=arm64",
    "-oAPT::Architectures::=arm64",
    "-qq",
  ];
  sh(["apt-get", ...opts, "update"]);
  const p = Bun.spawnSync(["apt-get", ...opts, "download", ...ARM64_DEBS], { cwd: debs, stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`apt-get download (arm64) failed: ${p.stderr.toString()}`);
  const tmp = `${root}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  for (const deb of readdirSync(debs).filter((f) => f.endsWith(".deb")))
    sh(["dpkg-deb", "-x", join(debs, deb), tmp]);
  rmSync(root, { recursive: true, force: true });
  renameSync(tmp, root);
  return root;
}

let sysroot: string;
let work: string;

/** Runs the aarch64 executable under qemu-user with ARGS (stdin optional). */
function arm64(args: string[], opts: { stdin?: string; env?: Record<string, string> } = {}) {
  const r = Bun.spawnSync([qemu!, ARM64_BIN, ...args], {
    env: { ...process.env, QEMU_LD_PREFIX: sysroot, ...opts.env },
    stdin: opts.stdin === undefined ? "ignore" : Buffer.from(opts.stdin),
    stderr: "pipe",
  });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

describe.skipIf(why !== undefined)("the aarch64 executable under qemu-user", () => {
  beforeAll(() => {
    // A no-op when dist/cryptpilot-fde-arm64 is newer than the sources (make's own rule).
    const b = Bun.spawnSync(["make", "-s", "build-arm64"], { cwd: TOP, stderr: "pipe" });
    if (b.exitCode !== 0) throw new Error(`make build-arm64 failed: ${b.stderr.toString()}`);
    sysroot = arm64Sysroot();
    work = tempDir("arm64");
  }, 300_000);
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test("is an aarch64 ELF executable and prints its version", () => {
    // ELF header: 64-bit little-endian, e_machine 183 (EM_AARCH64).
    const head = readFileSync(ARM64_BIN).subarray(0, 20);
    expect([...head.subarray(0, 6)]).toEqual([0x7f, 0x45, 0x4c, 0x46, 2, 1]);
    expect(head.readUInt16LE(18)).toBe(183);
    const r = arm64(["--version"]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(`cryptpilot-fde ${pkg.version}\n`);
    expect(r.code).toBe(0);
  });

  test("config check validates a configuration and fetches its keys (exec provider)", () => {
    const cfg = join(work, "cfg");
    mkdirSync(cfg);
    writeFileSync(
      join(cfg, "fde.toml"),
      [
        "[rootfs]",
        "[rootfs.encrypt.exec]",
        'command = "/bin/echo"',
        'args = ["-n", "rootfs-key-0123456789abcdef0123456789"]',
        "[delta]",
        "[delta.encrypt.exec]",
        'command = "/bin/echo"',
        'args = ["-n", "delta-key-0123456789abcdef01234567890"]',
        "",
      ].join("\n"),
    );
    const r = arm64(["-c", cfg, "config", "check"]);
    expect(r.stdout + r.stderr).toContain("FDE config check passed");
    expect(r.stdout + r.stderr).not.toContain("key-0123");
    expect(r.code).toBe(0);
    const bad = arm64(["-c", cfg, "config", "check", "--bogus"]);
    expect(bad.code).toBe(2);
  });

  test("show-reference-value on an x86-64 disk image gives what this host's build gives", () => {
    const deb = debianBoot();
    const V = deb.kernelVersion;
    const esp = fatImage(join(work, "esp.img"), 40, {
      "EFI/debian/shimx64.efi": readFileSync(deb.shim),
      "EFI/debian/grubx64.efi": readFileSync(deb.grub),
      "EFI/BOOT/BOOTX64.EFI": readFileSync(deb.shim),
    });
    const root = ext4Image(join(work, "root.img"), 48, {
      [`boot/vmlinuz-${V}`]: readFileSync(deb.kernel),
      [`boot/initrd.img-${V}`]: "initrd\n",
      "boot/grub/grub.cfg": `menuentry 'Debian' {\n  linux /boot/vmlinuz-${V} root=LABEL=root ro\n  initrd /boot/initrd.img-${V}\n}\n`,
    });
    const disk = diskImage(join(work, "disk.img"), "gpt", [
      { sizeMiB: 40, type: ESP_GPT, image: esp },
      { sizeMiB: 48, type: LINUX_GPT, name: "root", image: root },
    ]);
    const args = ["show-reference-value", "--disk", disk, "--hash-algo", "sha256", "--hash-algo", "sha384"];
    const r = arm64(args);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const host = Bun.spawnSync([process.execPath, MAIN, ...args], { stderr: "pipe" });
    expect(host.exitCode).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, string[]>;
    expect(out).toEqual(JSON.parse(host.stdout.toString()));
    expect(out["measurement.kernel.SHA-256"]).toEqual([sh(["sha256sum", deb.kernel]).split(" ")[0]!]);
  });

  describe.skipIf(!hasSwtpm || !Bun.which("cryptsetup"))("TPM2 (swtpm)", () => {
    let tpm: Swtpm;
    beforeAll(async () => {
      tpm = await startSwtpm();
    });
    afterAll(async () => {
      await tpm?.stop();
    });

    test("tpm2 enroll seals a volume's key; the tpm2 provider unseals it (config check of a volume)", () => {
      const image = luksImage(work, "data.img", VOLUME_KEY);
      const env = { TPM2TOOLS_TCTI: tpm.tcti };
      const e = arm64(
        ["-c", "/nonexistent", "tpm2", "enroll", "--volume", "rootfs", "--device", image, "--pcrs", "16"],
        {
          stdin: VOLUME_KEY,
          env,
        },
      );
      expect(`${e.code} ${e.stderr}`).toStartWith("0 ");
      const tokens = JSON.parse(sh(["cryptsetup", "luksDump", "--dump-json-metadata", image])).tokens;
      expect(Object.values(tokens).map((t) => (t as { type: string }).type)).toEqual(["cryptpilot-tpm2"]);

      const cfg = join(work, "tpm-cfg");
      mkdirSync(join(cfg, "volumes"), { recursive: true });
      writeFileSync(
        join(cfg, "volumes/data.toml"),
        `volume = "data0"\ndev = "${image}"\n[encrypt.tpm2]\npcrs = [16]\ntcti = "${tpm.tcti}"\n`,
      );
      const ok = arm64(["-c", cfg, "volume", "check"], { env });
      expect(`${ok.code} ${ok.stdout}${ok.stderr}`).toStartWith("0 ");
      expect(ok.stdout + ok.stderr).not.toContain(VOLUME_KEY);
      expect(ok.stdout + ok.stderr).not.toContain(RECOVERY);

      // The seal is bound to PCR 16: extending it makes the unseal fail (the arm64 build really unseals).
      tpm2Tool(tpm, work, ["tpm2_pcrextend", `16:sha256=${"11".repeat(32)}`]);
      const after = arm64(["-c", cfg, "volume", "check"], { env });
      expect(after.code).toBe(1);
    });
  });
});
