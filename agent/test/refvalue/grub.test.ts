/** GRUB default-entry selection and command-line construction, on grub.cfg/BLS trees in a temp dir. */
import { afterAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { hostTree } from "../../src/disk/image/fs.ts";
import { parseGrubenv, resolveBootEntry, rpmvercmp } from "../../src/refvalue/grub.ts";
import { loaderCmdline, splitWords } from "../../src/refvalue/grubscript.ts";
import { writeFiles } from "../../testkit/images.ts";
import { tempDir } from "../../testkit/sh.ts";

const work = tempDir("grub");
afterAll(() => rmSync(work, { recursive: true, force: true }));

const DEBIAN_CFG = `
if [ -s $prefix/grubenv ]; then
  load_env
fi
if [ "\${next_entry}" ] ; then
   set default="\${next_entry}"
   set next_entry=
else
   set default="\${saved_entry}"
fi
menuentry_id_option="--id"
function load_video {
  insmod all_video
}
menuentry 'Debian' --class debian $menuentry_id_option 'simple' {
\tlinux /vmlinuz-new root=UUID=1 ro quiet
\tinitrd /initrd.img-new
}
submenu 'Advanced' $menuentry_id_option 'advanced' {
\tmenuentry 'Debian, old' $menuentry_id_option 'old' {
\t\tlinux /vmlinuz-old root=UUID=1 ro \\
\t\t  quiet
\t\tinitrd /initrd.img-old /extra.img
\t}
\tmenuentry 'Debian, old (recovery mode)' $menuentry_id_option 'old-recovery' {
\t\tlinux /vmlinuz-old root=UUID=1 ro single
\t}
}
`;

function resolve(files: Record<string, string>, env: string, cfgName = "grub/grub.cfg") {
  const dir = join(work, String(Math.random()).slice(2));
  writeFiles(dir, files);
  const boot = hostTree(dir);
  return resolveBootEntry({
    boot,
    grubCfg: files[cfgName] === undefined ? undefined : { text: files[cfgName]!, where: cfgName },
    env: parseGrubenv(env),
    root: "hd0,gpt2",
  });
}

describe("default entry", () => {
  const cfg = { "grub/grub.cfg": DEBIAN_CFG };
  test("never booted (no saved_entry): entry 0", () => {
    expect(resolve(cfg, "# GRUB Environment Block\n####").linux).toEqual([
      "/vmlinuz-new",
      "root=UUID=1",
      "ro",
      "quiet",
    ]);
  });
  test("saved_entry through a submenu, by id and by title", () => {
    expect(resolve(cfg, "saved_entry=advanced>old-recovery\n").linux.at(-1)).toBe("single");
    expect(resolve(cfg, "saved_entry=Advanced>Debian, old\n").initrds).toEqual([
      "/initrd.img-old",
      "/extra.img",
    ]);
  });
  test("numeric default; a submenu selected by number boots its first entry", () => {
    expect(resolve(cfg, "saved_entry=1\n").linux[0]).toBe("/vmlinuz-old");
    expect(resolve(cfg, "saved_entry=1>1\n").linux.at(-1)).toBe("single");
  });
  test("next_entry wins over saved_entry", () => {
    expect(resolve(cfg, "saved_entry=simple\nnext_entry=advanced>old\n").linux[0]).toBe("/vmlinuz-old");
  });
  test("an unknown saved_entry falls back to entry 0, as GRUB does", () => {
    expect(resolve(cfg, "saved_entry=gone\n").linux[0]).toBe("/vmlinuz-new");
  });
  test('a literal `set default="1"` ignores saved_entry (GRUB_DEFAULT=1)', () => {
    const literal = {
      "grub/grub.cfg": DEBIAN_CFG.replace(`set default="\${saved_entry}"`, 'set default="1"'),
    };
    expect(resolve(literal, "saved_entry=simple\n").linux[0]).toBe("/vmlinuz-old");
  });
});

describe("BLS", () => {
  const entry = (v: string) =>
    `title T ${v}\nversion ${v}\nlinux /vmlinuz-${v}\ninitrd /initramfs-${v}.img $tuned_initrd\noptions $kernelopts $tuned_params\n`;
  const files = {
    "loader/entries/m-5.10.134-9.conf": entry("5.10.134-9"),
    "loader/entries/m-5.10.134-19.conf": entry("5.10.134-19"),
    "loader/entries/m-5.4.0-1.conf": entry("5.4.0-1"),
    "grub2/grub.cfg": `set default="\${saved_entry}"\nblscfg\n`,
  };
  test("without saved_entry the newest version boots (rpm version order)", () => {
    const e = resolve(files, "kernelopts=root=/dev/vda2 ro  quiet\n", "grub2/grub.cfg");
    expect(e.linux).toEqual(["(hd0,gpt2)/vmlinuz-5.10.134-19", "root=/dev/vda2", "ro", "quiet"]);
    expect(e.initrds).toEqual(["(hd0,gpt2)/initramfs-5.10.134-19.img"]);
  });
  test("saved_entry names a BLS file; tuned variables expand", () => {
    const e = resolve(
      files,
      "saved_entry=m-5.4.0-1\nkernelopts=root=/dev/vda2\ntuned_params=skew_tick=1\ntuned_initrd=/tuned.img\n",
      "grub2/grub.cfg",
    );
    expect(e.linux).toEqual(["(hd0,gpt2)/vmlinuz-5.4.0-1", "root=/dev/vda2", "skew_tick=1"]);
    expect(e.initrds).toEqual(["(hd0,gpt2)/initramfs-5.4.0-1.img", "(hd0,gpt2)/tuned.img"]);
  });
  test("rpmvercmp", () => {
    expect(rpmvercmp("5.10.134-19", "5.10.134-9")).toBe(1);
    expect(rpmvercmp("1.0~rc1", "1.0")).toBe(-1);
    expect(rpmvercmp("1.0a", "1.0")).toBe(1);
    expect(rpmvercmp("2", "10")).toBe(-1);
  });
});

describe("GRUB words and the measured command line", () => {
  test("quotes, escapes and variables", () => {
    const vars = { a: "x  y", e: "" };
    expect(splitWords(`linux /k 'a b' "c $a" d\\ e $a $e f#g # comment`, vars)).toEqual([
      "linux",
      "/k",
      "a b",
      "c x  y",
      "d e",
      "x",
      "y",
      "f#g",
    ]);
    expect(splitWords(`x=\${a}z`, vars)).toEqual(["x=x", "yz"]);
  });
  test("grub_create_loader_cmdline quoting", () => {
    expect(loaderCmdline(["/vmlinuz", "a b", `q"x`, "b\\s", "it's"])).toBe(
      `/vmlinuz "a b" q\\"x b\\\\s it\\'s`,
    );
  });
});
