/**
 * The CPU architectures cryptpilot-fde builds for and converts images of, and every fact that
 * differs between them, defined once: convert (the guest's architecture, the UKI's stub and ESP
 * name), the reference values (which shim, GRUB and UKI names to look for on an ESP) and the
 * packaging all read them from here. Adding an architecture is adding one entry to ARCHES.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { FdeError } from "./errors.ts";
import { describeFileType, OPEN_TO_INSPECT } from "./file-type.ts";

export interface Arch {
  /** Debian's name (dpkg --print-architecture, .deb file names): what messages call it. */
  debian: "amd64" | "arm64";
  /** The kernel's name (uname -m), also qemu-user's: binfmt_misc's entry is qemu-<uname>. */
  uname: "x86_64" | "aarch64";
  /** Node's and Bun's process.arch. */
  node: "x64" | "arm64";
  /** ELF e_machine: EM_X86_64, EM_AARCH64 (<elf.h>). */
  elfMachine: number;
  /** PE/COFF Machine: IMAGE_FILE_MACHINE_AMD64, IMAGE_FILE_MACHINE_ARM64 (PE format spec). */
  peMachine: number;
  /**
   * The UEFI spec's file-name suffix: BOOT<SUFFIX>.EFI at the removable-media path, and the
   * distributions' shim<suffix>.efi, grub<suffix>.efi, mm<suffix>.efi and systemd's
   * linux<suffix>.efi.stub.
   */
  efiSuffix: "x64" | "aa64";
}

export const AMD64: Arch = {
  debian: "amd64",
  uname: "x86_64",
  node: "x64",
  elfMachine: 62,
  peMachine: 0x8664,
  efiSuffix: "x64",
};

export const ARM64: Arch = {
  debian: "arm64",
  uname: "aarch64",
  node: "arm64",
  elfMachine: 183,
  peMachine: 0xaa64,
  efiSuffix: "aa64",
};

/** Every supported architecture, x86-64 first (the order names are searched and listed in). */
export const ARCHES: readonly Arch[] = [AMD64, ARM64];

/** "arm64 (aarch64)": both names, since users know one or the other. */
export const archName = (a: Arch) => `${a.debian} (${a.uname})`;

/** The removable-media boot file the firmware loads on a fresh machine: BOOTX64.EFI, BOOTAA64.EFI. */
export const efiBootName = (a: Arch) => `BOOT${a.efiSuffix.toUpperCase()}.EFI`;
/** Its path on the ESP: where convert --uki puts the UKI, and where show-reference-value looks for one. */
export const efiBootPath = (a: Arch) => `/EFI/BOOT/${efiBootName(a)}`;
/** shim as Debian installs it (shim-signed): shimx64.efi, shimaa64.efi. */
export const shimName = (a: Arch) => `shim${a.efiSuffix}.efi`;
/** GRUB as shim chain-loads it: grubx64.efi, grubaa64.efi. */
export const grubName = (a: Arch) => `grub${a.efiSuffix}.efi`;
/** shim's MokManager: mmx64.efi, mmaa64.efi. */
export const mokManagerName = (a: Arch) => `mm${a.efiSuffix}.efi`;
/** systemd's EFI stub for a UKI (package systemd-boot-efi), as a path in the guest root. */
export const systemdStubPath = (a: Arch) => `/usr/lib/systemd/boot/efi/linux${a.efiSuffix}.efi.stub`;

/** The architecture this process runs on; an unsupported one is an error naming it. */
export function hostArch(nodeArch: string = process.arch): Arch {
  const arch = ARCHES.find((a) => a.node === nodeArch);
  if (!arch)
    throw new FdeError(
      `this host's architecture ${nodeArch} is not one cryptpilot-fde supports (${ARCHES.map(archName).join(", ")})`,
    );
  return arch;
}

/** The ELF header's identification and e_machine fit in its first 20 bytes; 64 is the ELF64 header. */
export const ELF_HEADER_BYTES = 64;
const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];
const ELFCLASS64 = 2;
const ELFDATA2LSB = 1;

/**
 * Pure: the architecture of an ELF file from its first bytes. Both supported architectures are
 * 64-bit little-endian; anything else (not ELF, 32-bit, big-endian, another machine) is an error
 * naming WHAT and what was found.
 */
export function elfArch(header: Uint8Array, what: string): Arch {
  const bad = (why: string) =>
    new FdeError(`${what} is not an executable for ${ARCHES.map((a) => a.uname).join(" or ")}: ${why}`);
  if (header.length < 20 || ELF_MAGIC.some((m, i) => header[i] !== m))
    throw bad(
      header.length < 20
        ? `it is ${header.length} bytes long, shorter than an ELF header`
        : "it is not an ELF file",
    );
  if (header[4] !== ELFCLASS64) throw bad(`its ELF class is ${header[4]}, not 64-bit (2)`);
  if (header[5] !== ELFDATA2LSB) throw bad(`its ELF data encoding is ${header[5]}, not little-endian (1)`);
  const machine = header[18]! | (header[19]! << 8);
  const arch = ARCHES.find((a) => a.elfMachine === machine);
  if (!arch)
    throw bad(
      `its ELF machine is ${machine}, which is none of ${ARCHES.map((a) => `${a.elfMachine} (${a.uname})`).join(", ")}`,
    );
  return arch;
}

/**
 * The architecture of the ELF executable at PATH, reading only its first ELF_HEADER_BYTES bytes.
 * A FIFO, device or symbolic link is refused without reading (O_NOFOLLOW, O_NONBLOCK); WHAT
 * names the file in errors (default PATH).
 */
export function readElfArch(path: string, what = path): Arch {
  let fd: number;
  try {
    fd = openSync(path, OPEN_TO_INSPECT | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FdeError(
      code === "ELOOP"
        ? `${what} is a symbolic link, not an executable`
        : `cannot read ${what}: ${code ?? (err as Error).message}`,
      { cause: err },
    );
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new FdeError(`${what} is ${describeFileType(st)}, not an executable`);
    const header = new Uint8Array(ELF_HEADER_BYTES);
    const n = readSync(fd, header, 0, ELF_HEADER_BYTES, 0);
    return elfArch(header.subarray(0, n), what);
  } finally {
    closeSync(fd);
  }
}

/** Pure: the architecture of a PE/COFF Machine value, or undefined for another machine. */
export const peArch = (machine: number): Arch | undefined => ARCHES.find((a) => a.peMachine === machine);
