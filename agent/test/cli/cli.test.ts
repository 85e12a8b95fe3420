/**
 * The CLI's exit codes and messages, run twice: from source (`bun agent/src/main.ts`) and as the
 * compiled `dist/cryptpilot-fde` (built by `make build` first, which is a no-op when up to date).
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { readBundle } from "../../src/config/bundle.ts";
import { loadConfig, parseBundle } from "../../src/config/index.ts";
import { VERSION } from "../../src/version.ts";
import { configDirMaker } from "../../testkit/harness.ts";
import { diskImage, ESP_GPT, ext4Image, fatImage, LINUX_GPT, writeFiles } from "../../testkit/images.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const BUN = join(ROOT, "node_modules/.bin/bun");
const BINARY = join(ROOT, "dist/cryptpilot-fde");

interface Result {
  code: number;
  stdout: string;
  stderr: string;
  raw: Uint8Array;
}

/** A config directory holding the given files. */
const configDir = configDirMaker("cli-");

const ROOTFS_KEY = "rootfs-key-\u00e9-bytes";
const GOOD_FDE = `
[rootfs]
delta_location = "ram"

[rootfs.encrypt.exec]
command = "printf"
args = ["%s", "${ROOTFS_KEY}"]

[delta]
integrity = true

[delta.encrypt.exec]
command = "printf"
args = ["delta-key"]
`;
const HASH = "0f".repeat(32);

for (const [label, prefix] of [
  ["source", [BUN, join(ROOT, "agent/src/main.ts")]],
  ["compiled binary", [BINARY]],
] as const) {
  describe(`cryptpilot-fde CLI (${label})`, () => {
    beforeAll(() => {
      if (label !== "compiled binary") return;
      const build = Bun.spawnSync(["make", "-s", "--no-print-directory", "build"], { cwd: ROOT });
      if (build.exitCode !== 0) throw new Error(`make build failed:\n${build.stderr.toString()}`);
    }, 120_000);

    async function cli(...args: string[]): Promise<Result> {
      const proc = Bun.spawn([...prefix, ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
      const [raw, stderr, code] = await Promise.all([
        new Response(proc.stdout).bytes(),
        new Response(proc.stderr).text(),
        proc.exited,
      ]);
      return { code, stdout: new TextDecoder().decode(raw), stderr, raw };
    }

    /** Errors are a paragraph for people, never a stack trace. */
    const noStack = (r: Result) => expect(r.stderr).not.toMatch(/^\s+at /m);

    test("--version and --help", async () => {
      const version = await cli("--version");
      expect(version).toMatchObject({ code: 0, stdout: `cryptpilot-fde ${VERSION}\n` });
      const help = await cli("--help");
      expect(help.code).toBe(0);
      for (const word of ["config check", "config dump", "fetch-key", "--config-dir"])
        expect(help.stdout).toContain(word);
      const commandHelp = await cli("config", "check", "--help");
      expect(commandHelp.stdout).toContain("--keep-checking");
    });

    test("usage errors exit 2", async () => {
      expect((await cli()).code).toBe(2);
      const unknown = await cli("frobnicate");
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toContain("unknown command 'frobnicate'");
      const badFlag = await cli("config", "check", "--bogus");
      expect(badFlag.code).toBe(2);
      expect(badFlag.stderr).toContain("config check");
    });

    test("convert: a bad --boot_part_size is a usage error naming the flag, before the configuration is read", async () => {
      const missing = join(configDir({}), "absent");
      for (const flag of ["--boot_part_size", "-b", "--boot-part-size"]) {
        const r = await cli(
          "convert",
          "-c",
          missing,
          "--in",
          "a",
          "--out",
          "b",
          "--rootfs-no-encryption",
          flag,
          "abc",
        );
        expect(r.code).toBe(2);
        const named = flag === "-b" ? "--boot_part_size" : flag;
        expect(r.stderr).toStartWith(`error: convert: ${named} takes a size (examples: 512M, 1G), not 'abc'`);
        expect(r.stderr).not.toContain("fde.toml");
        noStack(r);
      }
    });

    test("config check: a valid directory passes and fetches each key without printing it", async () => {
      const dir = configDir({
        "fde.toml": GOOD_FDE,
        "global.toml": "[boot]\nverbose = true\n",
        "metadata.toml": `type = 1\nroot_hash = "${HASH}"\n`,
      });
      const r = await cli("-c", dir, "config", "check");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("rootfs: key fetched from exec printf");
      expect(r.stdout).toContain("delta: key fetched from exec printf");
      expect(r.stdout).toContain(`root hash ${HASH}`);
      expect(r.stdout).toContain("FDE config check passed");
      expect(r.stdout + r.stderr).not.toContain(ROOTFS_KEY);
      expect(r.stdout + r.stderr).not.toContain("delta-key");
    });

    test("config check --skip-check-passphrase does not run the providers", async () => {
      const dir = configDir({});
      const marker = join(dir, "ran");
      writeFileSync(
        join(dir, "fde.toml"),
        `[rootfs]\n[delta.encrypt.exec]\ncommand = "sh"\nargs = ["-c", "touch ${marker}; printf k"]\n`,
      );
      const r = await cli("config", "check", "-c", dir, "--skip-check-passphrase");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("rootfs: not encrypted");
      expect(r.stdout).toContain("delta: exec key provider configured (key not fetched)");
      expect(existsSync(marker)).toBe(false);
      expect((await cli("config", "check", "-c", dir)).code).toBe(0);
      expect(existsSync(marker)).toBe(true);
    });

    test("config check: no fde.toml is not an FDE system", async () => {
      const r = await cli("-c", configDir({}), "config", "check");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("not an FDE system");
    });

    test("config check: an invalid file exits 2 with file, line and field in one paragraph", async () => {
      const dir = configDir({ "fde.toml": GOOD_FDE.replace('"ram"', '"tmpfs"') });
      const r = await cli("-c", dir, "config", "check");
      expect(r.code).toBe(2);
      expect(r.stderr).toStartWith(
        `error: ${dir}/fde.toml line 3: rootfs.delta_location: expected ("disk" | "disk-persist" | "ram"), got "tmpfs"\n`,
      );
      noStack(r);
    });

    test("config check: bad TOML syntax exits 2 with the line", async () => {
      const r = await cli("-c", configDir({ "global.toml": "[boot\nverbose = true\n" }), "config", "check");
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/global\.toml line 1: invalid TOML/);
      noStack(r);
    });

    test("config check: without --keep-checking only the first problem, with it all of them", async () => {
      const dir = configDir({
        "fde.toml":
          "[rootfs]\ndelta_backend = 'zfs'\n[delta]\nintegrity = 1\n[delta.encrypt.exec]\ncommand = 'true'\n",
        "global.toml": "[boot]\nverbose = 'yes'\n",
        "metadata.toml": "type = 2\nroot_hash = 'zz'\n",
      });
      const first = await cli("-c", dir, "config", "check");
      expect(first.code).toBe(2);
      expect(first.stderr.match(/^error: /gm)?.length).toBe(1);
      expect(first.stderr).toContain("run with --keep-checking");
      const all = await cli("-c", dir, "config", "check", "--keep-checking");
      expect(all.code).toBe(2);
      for (const where of [
        "global.toml line 2: boot.verbose",
        "fde.toml line 2: rootfs.delta_backend",
        "fde.toml line 4: delta.integrity",
        "metadata.toml line 1: type",
        "metadata.toml line 2: root_hash",
      ]) {
        expect(all.stderr).toContain(where);
      }
      expect(all.stderr).toContain("FDE config check failed: 5 problem(s)");
      noStack(all);
    });

    test("config check: a failing provider exits 1; --keep-checking still checks the next volume", async () => {
      const fde = GOOD_FDE.replace(`args = ["%s", "${ROOTFS_KEY}"]`, `args = ["-c"]`).replace(
        'command = "printf"\nargs = ["-c"]',
        'command = "false"',
      );
      const dir = configDir({ "fde.toml": fde });
      const stop = await cli("-c", dir, "config", "check");
      expect(stop.code).toBe(1);
      expect(stop.stderr).toContain("exec key provider: command 'false' (volume rootfs) exited with code 1");
      expect(stop.stdout).not.toContain("delta:");
      const all = await cli("-c", dir, "config", "check", "--keep-checking");
      expect(all.code).toBe(1);
      expect(all.stdout).toContain("delta: key fetched");
      expect(all.stderr).toContain("FDE config check failed: 1 problem(s)");
      noStack(all);
    });

    test("config check: otp for an FDE volume is rejected with the reason", async () => {
      const r = await cli(
        "-c",
        configDir({ "fde.toml": "[rootfs]\n[delta.encrypt.otp]\n" }),
        "config",
        "check",
      );
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("fde.toml line 2: delta.encrypt: the otp provider");
      expect(r.stderr).toContain("does not survive a reboot");
    });

    test("config dump prints upstream's header, a hash of the body, and a bundle that loads back", async () => {
      const dir = configDir({ "fde.toml": GOOD_FDE });
      const r = await cli("-c", dir, "config", "dump");
      expect(r.code).toBe(0);
      expect(r.stdout).toStartWith("#cryptpilot-fde-config\n\n# This config is generated by cryptpilot.");
      const [, hash, body] =
        /# The sha384 hash of this config is: ([0-9a-f]{96})\n\n\n([\s\S]*)$/.exec(r.stdout) ?? [];
      // upstream's hash: over its compact serialisation (gen_hash_content), which a reader recomputes.
      expect(hash).toBe(readBundle("dump", r.stdout).sha384);
      expect(body).toContain('args = [\n    "%s",\n');
      expect(body).toContain('[fde.rootfs]\ndelta_location = "ram"\ndelta_backend = "dm-snapshot"');
      expect(parseBundle("dump", r.stdout)).toEqual(await loadConfig(dir));
    });

    test("config dump --initrd reads /etc/cryptpilot from a zstd initrd and prints the same bundle", async () => {
      const dir = configDir({ "fde.toml": GOOD_FDE, "global.toml": "[boot]\nverbose = true\n" });
      const tree = join(dir, "tree");
      Bun.spawnSync(["mkdir", "-p", join(tree, "etc/cryptpilot")]);
      Bun.spawnSync(["cp", join(dir, "fde.toml"), join(dir, "global.toml"), join(tree, "etc/cryptpilot/")]);
      const initrd = join(dir, "initrd.img");
      const pack = Bun.spawnSync(["sh", "-c", `find . | cpio -o -H newc --quiet | zstd -q > ${initrd}`], {
        cwd: tree,
      });
      expect(pack.exitCode).toBe(0);
      const fromInitrd = await cli("config", "dump", "--initrd", initrd);
      expect(fromInitrd.code).toBe(0);
      expect(fromInitrd.stdout).toBe((await cli("-c", dir, "config", "dump")).stdout);
      const bad = await cli("config", "dump", "--initrd", join(dir, "fde.toml"));
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain("is not an initrd");
      noStack(bad);
    });

    test("config dump --disk reads the config from the initrd in a disk image's /boot", async () => {
      const dir = configDir({});
      const tree = join(dir, "initrd");
      writeFiles(tree, { "etc/cryptpilot/fde.toml": GOOD_FDE, "usr/bin/true": "x" });
      const initrd = join(dir, "initrd.img");
      const pack = Bun.spawnSync(["sh", "-c", `find . | cpio -o -H newc --quiet | lz4 -l -q > ${initrd}`], {
        cwd: tree,
      });
      expect(pack.exitCode).toBe(0);
      const esp = fatImage(join(dir, "esp.img"), 40, { "EFI/debian/grubx64.efi": "not really" });
      const boot = ext4Image(join(dir, "boot.img"), 16, {
        "vmlinuz-6.1.0-test": "kernel",
        "initrd.img-6.1.0-test": readFileSync(initrd),
      });
      const disk = diskImage(join(dir, "disk.raw"), "gpt", [
        { sizeMiB: 40, type: ESP_GPT, image: esp },
        { sizeMiB: 16, type: LINUX_GPT, image: boot },
      ]);
      const r = await cli("config", "dump", "--disk", disk);
      expect(r.code).toBe(0);
      expect(parseBundle("dump", r.stdout).fde).toEqual(
        await loadConfig(configDir({ "fde.toml": GOOD_FDE })).then((c) => c.fde),
      );
      const both = await cli("config", "dump", "--disk", disk, "--initrd", initrd);
      expect(both.code).toBe(2);
      const plain = await cli("config", "dump", "--disk", boot);
      expect(plain.code).not.toBe(0);
      noStack(plain);
      expect((await cli("-c", configDir({}), "config", "dump")).code).toBe(2);
    }, 30_000);

    test("fetch-key writes the exact bytes to a pipe and to a new 0600 file", async () => {
      const dir = configDir({ "fde.toml": GOOD_FDE });
      const piped = await cli("-c", dir, "fetch-key", "--volume", "rootfs");
      expect(piped.code).toBe(0);
      expect(Buffer.from(piped.raw).toString()).toBe(ROOTFS_KEY);
      expect(piped.stderr).not.toContain(ROOTFS_KEY);
      const out = join(dir, "delta.key");
      const file = await cli("-c", dir, "fetch-key", "--volume", "delta", "--out", out);
      expect(file.code).toBe(0);
      expect(file.stdout).toBe("");
      expect(readFileSync(out, "utf8")).toBe("delta-key");
      expect(statSync(out).mode & 0o777).toBe(0o600);
    });

    test("fetch-key --out never writes into an existing file; --force replaces your own with a new 0600 one", async () => {
      const dir = configDir({ "fde.toml": GOOD_FDE });
      const out = join(dir, "delta.key");
      writeFileSync(out, "old contents, world readable", { mode: 0o644 });
      const refused = await cli("-c", dir, "fetch-key", "--volume", "delta", "--out", out);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(`--out ${out} already exists`);
      expect(refused.stderr).toContain("--force");
      noStack(refused);
      expect(readFileSync(out, "utf8")).toBe("old contents, world readable");
      expect(statSync(out).mode & 0o777).toBe(0o644);
      const oldInode = statSync(out).ino;
      const forced = await cli("-c", dir, "fetch-key", "--volume", "delta", "--out", out, "--force");
      expect(forced.code).toBe(0);
      expect(readFileSync(out, "utf8")).toBe("delta-key");
      expect(statSync(out).mode & 0o777).toBe(0o600);
      // A new file renamed over the old one, not the old (once world-readable) inode rewritten.
      expect(statSync(out).ino).not.toBe(oldInode);
      const stray = await cli("-c", dir, "fetch-key", "--volume", "delta", "--force");
      expect(stray.code).toBe(2);
      expect(stray.stderr).toContain("--force only applies to --out");
    });

    test("fetch-key refuses to write a key to a terminal", async () => {
      const dir = configDir({ "fde.toml": GOOD_FDE });
      // script(1) gives the command a pseudo-terminal as stdout.
      const quoted = [...prefix, "-c", dir, "fetch-key", "--volume", "rootfs"].map((a) => `'${a}'`).join(" ");
      const proc = Bun.spawnSync(["script", "-qec", quoted, "/dev/null"], { stdin: "ignore" });
      const output = proc.stdout.toString();
      expect(proc.exitCode).toBe(2);
      expect(output).toContain("refusing to write a key to a terminal");
      expect(output).not.toContain(ROOTFS_KEY);
    });

    test("fetch-key usage and config errors", async () => {
      const plain = configDir({
        "fde.toml": "[rootfs]\n[delta.encrypt.exec]\ncommand = 'printf'\nargs = ['k']\n",
      });
      const noVolume = await cli("-c", plain, "fetch-key");
      expect(noVolume.code).toBe(2);
      expect(noVolume.stderr).toContain("--volume rootfs or --volume delta");
      const unencrypted = await cli("-c", plain, "fetch-key", "--volume", "rootfs");
      expect(unencrypted.code).toBe(2);
      expect(unencrypted.stderr).toContain("the rootfs is not encrypted");
      const failing = configDir({ "fde.toml": "[rootfs]\n[delta.encrypt.exec]\ncommand = 'false'\n" });
      const failed = await cli("-c", failing, "fetch-key", "--volume", "delta");
      expect(failed.code).toBe(1);
      expect(failed.raw.length).toBe(0);
      noStack(failed);
    });
  });
}
