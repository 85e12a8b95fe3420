/**
 * The initrd compression dracut-module/91cryptpilot/module-setup.sh leaves to dracut: lz4 when
 * nothing chose one, else what the image's dracut configuration or the caller chose. install()
 * runs in bash after the same steps dracut takes before it (source the conf files, then
 * INITRD_COMPRESS, --compress and --no-compress), with dracut's helpers stubbed; bench/footprint.ts
 * runs the real dracut of each guest with both.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../../..");
const work = mkdtempSync(join(tmpdir(), "dracut-compress-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// A stand-in lz4 on PATH, so the result does not depend on the test host's packages.
const bin = join(work, "bin");
mkdirSync(bin);
writeFileSync(join(bin, "lz4"), "#!/bin/sh\n", { mode: 0o755 });

const STUBS = `
inst_simple() { :; }; inst_multiple() { :; }; inst_binary() { :; }; inst_script() { :; }
inst_hook() { :; }; inst_libdir_file() { :; }; instmods() { :; }; derror() { :; }
dracut_module_included() { return 1; }
`;

/**
 * The compression dracut goes on with after our install(): CONF is a dracut.conf.d file's text,
 * CLI the dracut arguments that set compress_l / _no_compress_l (dracut.sh's option loop).
 */
function compressAfterInstall(conf: string, cli: { compress?: string; noCompress?: boolean } = {}): string {
  const dir = mkdtempSync(join(work, "run-"));
  const cfg = join(dir, "cfg");
  mkdirSync(cfg);
  writeFileSync(join(cfg, "fde.toml"), '[rootfs]\n[delta]\n[delta.encrypt.exec]\ncommand = "/bin/true"\n');
  writeFileSync(join(dir, "90-image.conf"), conf);
  const script = `${STUBS}
${cli.compress ? `compress_l=${cli.compress}` : ""}
${cli.noCompress ? "_no_compress_l=cat" : ""}
. "${dir}/90-image.conf"
# dracut.sh, after the conf files and before any module:
[[ $INITRD_COMPRESS ]] && compress=$INITRD_COMPRESS
[[ $compress_l ]] && compress=$compress_l
[[ $_no_compress_l == cat ]] && compress=cat
source "${ROOT}/dracut-module/91cryptpilot/module-setup.sh"
install >/dev/null 2>&1
echo "$compress"`;
  const proc = Bun.spawnSync(["bash", "-c", script], {
    env: {
      PATH: `${bin}:/usr/bin:/bin`,
      CRYPTPILOT_CONFIG_DIR: cfg,
      CRYPTPILOT_BIN: "/bin/sh",
      initdir: join(dir, "initrd"),
      moddir: join(ROOT, "hooks"),
      systemdsystemunitdir: "/usr/lib/systemd/system",
      udevrulesdir: "/usr/lib/udev/rules.d",
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  return proc.stdout.toString().trim();
}

test("nothing chosen: lz4, the boot-time trade-off the module defaults to", () => {
  expect(compressAfterInstall("# no compression configured\n")).toBe("lz4");
});

test('the image\'s dracut.conf.d compress="zstd" is kept (the module used to replace it with lz4)', () => {
  expect(compressAfterInstall('compress="zstd"\n')).toBe("zstd");
});

test("--compress and --no-compress from the caller still win over the image's configuration", () => {
  expect(compressAfterInstall('compress="zstd"\n', { compress: "gzip" })).toBe("gzip");
  expect(compressAfterInstall('compress="zstd"\n', { noCompress: true })).toBe("cat");
  expect(compressAfterInstall("", { noCompress: true })).toBe("cat");
});
