/**
 * Typed wrappers over the ESAPI calls we need. Inputs and outputs are TPM wire-format bytes
 * (marshal.ts); conversion to C structs goes through libtss2-mu (see ffi.ts). ESAPI objects are
 * ESYS_TR numbers; callers flush what they create (try/finally).
 */
import { type Pointer, toArrayBuffer } from "bun:ffi";
import { FdeError } from "../errors.ts";
import { log } from "../log.ts";
import { C_STRUCT_MAX, cstr, type MuType, outPtr, tss2 } from "./ffi.ts";
import {
  BANK_ALG,
  BANK_DIGEST_SIZE,
  encodePcrSelection,
  type PcrBank,
  type PcrSelection,
  readDigestList,
  readPcrSelection,
  TPM2_ALG,
  TpmReader,
  TpmWriter,
} from "./marshal.ts";
import { check, TPM_RC, TpmError, tpmBaseCode } from "./rc.ts";
import { checkTctiDevice } from "./tcti.ts";

export type Handle = number;

/** ESYS_TR constants (tss2_esys.h). */
export const ESYS_TR = {
  NONE: 0xfff,
  PASSWORD: 0x0ff,
  RH_OWNER: 0x101,
  RH_NULL: 0x107,
  RH_ENDORSEMENT: 0x10b,
} as const;

// TPMA_SESSION bits.
export const SESSION_ATTR = { continueSession: 0x01, decrypt: 0x20, encrypt: 0x40 } as const;

const TPM2_SE = { hmac: 0x00, policy: 0x01, trial: 0x03 } as const;
const TPM2_CAP_PCRS = 5;
/** Bytes per TPM2_NV_Read; every TPM supports at least this much (TPM2_PT_NV_BUFFER_MAX >= 512). */
const NV_CHUNK = 512;

function tpm2bEmpty(): Uint8Array {
  return new TpmWriter().u16(0).done();
}

export interface SensitiveCreate {
  userAuth?: Uint8Array;
  data?: Uint8Array;
}

export class Esys {
  private constructor(
    private ctx: Pointer | null,
    private tctiCtx: Pointer | null,
    readonly tcti: string,
  ) {}

  /** Connect to the TPM named by a TCTI string. Throws FdeError naming the library, device or TCTI. */
  static open(tcti: string): Esys {
    checkTctiDevice(tcti);
    const lib = tss2();
    const tctiSlot = outPtr();
    const rc = lib.tctildr.Tss2_TctiLdr_Initialize(cstr(tcti), tctiSlot);
    if (rc !== 0) {
      throw new TpmError(
        "Tss2_TctiLdr_Initialize",
        rc,
        `cannot open the TPM through TCTI "${tcti}"`,
        "check that the TPM (or swtpm) is running and that the TCTI library (libtss2-tcti-device.so.0, libtss2-tcti-swtpm.so.0, ...) is installed",
      );
    }
    const tctiCtx = Number(tctiSlot[0]) as Pointer;
    const ctxSlot = outPtr();
    const rc2 = lib.esys.Esys_Initialize(ctxSlot, tctiCtx, null);
    if (rc2 !== 0) {
      lib.tctildr.Tss2_TctiLdr_Finalize(tctiSlot);
      throw new TpmError("Esys_Initialize", rc2, `cannot start ESAPI on TCTI "${tcti}"`);
    }
    log.debug(`tpm: opened ${tcti}`);
    return new Esys(Number(ctxSlot[0]) as Pointer, tctiCtx, tcti);
  }

  close(): void {
    const lib = tss2();
    if (this.ctx) {
      const slot = outPtr();
      slot[0] = BigInt(this.ctx);
      lib.esys.Esys_Finalize(slot);
      this.ctx = null;
    }
    if (this.tctiCtx) {
      const slot = outPtr();
      slot[0] = BigInt(this.tctiCtx);
      lib.tctildr.Tss2_TctiLdr_Finalize(slot);
      this.tctiCtx = null;
    }
  }

  private get c(): Pointer {
    if (!this.ctx) throw new FdeError("TPM: the ESAPI context is already closed");
    return this.ctx;
  }

  // ---- wire <-> C struct conversion --------------------------------------------------------

  private toC(type: MuType, wire: Uint8Array): Uint8Array {
    const dest = new Uint8Array(C_STRUCT_MAX);
    const off = outPtr();
    check(`Tss2_MU_${type}_Unmarshal`, tss2().mu[`Tss2_MU_${type}_Unmarshal`]!(wire, wire.length, off, dest));
    if (Number(off[0]) !== wire.length) {
      throw new FdeError(`TPM: internal error: ${type} has ${wire.length - Number(off[0])} trailing bytes`);
    }
    return dest;
  }

  private fromC(type: MuType, src: Pointer): Uint8Array {
    const buf = new Uint8Array(C_STRUCT_MAX);
    const off = outPtr();
    check(`Tss2_MU_${type}_Marshal`, tss2().mu[`Tss2_MU_${type}_Marshal`]!(src, buf, buf.length, off));
    const out = buf.slice(0, Number(off[0]));
    buf.fill(0);
    return out;
  }

  /**
   * Marshal an ESAPI-allocated output and free it. For secrets (TPM2B_SENSITIVE_DATA) the C copy
   * is wiped first: a TPM2B is a UINT16 size followed by the bytes.
   */
  private take(type: MuType, slot: BigUint64Array, secret = false): Uint8Array {
    const p = Number(slot[0]) as Pointer;
    if (!p) throw new FdeError(`TPM: internal error: ESAPI returned no ${type}`);
    try {
      return this.fromC(type, p);
    } finally {
      if (secret) {
        const size = new DataView(toArrayBuffer(p, 0, 2)).getUint16(0, true);
        new Uint8Array(toArrayBuffer(p, 0, 2 + size)).fill(0);
      }
      tss2().esys.Esys_Free(p);
    }
  }

  // ---- objects -----------------------------------------------------------------------------

  /** TPM2_CreatePrimary. `template` is a TPMT_PUBLIC; returns the handle and the TPMT_PUBLIC. */
  createPrimary(hierarchy: Handle, template: Uint8Array): { handle: Handle; publicArea: Uint8Array } {
    const handle = new Uint32Array(1);
    const pub = outPtr();
    const rc = tss2().esys.Esys_CreatePrimary(
      this.c,
      hierarchy,
      ESYS_TR.PASSWORD,
      ESYS_TR.NONE,
      ESYS_TR.NONE,
      this.toC(
        "TPM2B_SENSITIVE_CREATE",
        new TpmWriter().sized((w) => w.tpm2b(new Uint8Array(0)).tpm2b(new Uint8Array(0))).done(),
      ),
      this.toC("TPM2B_PUBLIC", new TpmWriter().tpm2b(template).done()),
      this.toC("TPM2B_DATA", tpm2bEmpty()),
      this.toC("TPML_PCR_SELECTION", encodePcrSelection([])),
      handle,
      pub,
      null,
      null,
      null,
    );
    if (rc !== 0) {
      const base = tpmBaseCode(rc);
      const badAuth = base === TPM_RC.BAD_AUTH || base === TPM_RC.AUTH_FAIL;
      throw new TpmError(
        "Esys_CreatePrimary",
        rc,
        hierarchy === ESYS_TR.RH_ENDORSEMENT
          ? "creating a key in the endorsement hierarchy"
          : "creating the storage root key",
        badAuth ? "the hierarchy has a password set (tpm2_changeauth), which is not supported" : undefined,
      );
    }
    return { handle: handle[0]!, publicArea: new TpmReader(this.take("TPM2B_PUBLIC", pub)).tpm2b() };
  }

  /** TPM2_Create under `parent`; returns TPM2B_PRIVATE and TPM2B_PUBLIC in wire format (with sizes). */
  create(
    parent: Handle,
    session: Handle,
    template: Uint8Array,
    sensitive: SensitiveCreate,
  ): { privateBlob: Uint8Array; publicBlob: Uint8Array } {
    const sens = new TpmWriter()
      .sized((w) =>
        w.tpm2b(sensitive.userAuth ?? new Uint8Array(0)).tpm2b(sensitive.data ?? new Uint8Array(0)),
      )
      .done();
    const sensC = this.toC("TPM2B_SENSITIVE_CREATE", sens);
    sens.fill(0);
    const priv = outPtr();
    const pub = outPtr();
    try {
      check(
        "Esys_Create",
        tss2().esys.Esys_Create(
          this.c,
          parent,
          session,
          ESYS_TR.NONE,
          ESYS_TR.NONE,
          sensC,
          this.toC("TPM2B_PUBLIC", new TpmWriter().tpm2b(template).done()),
          this.toC("TPM2B_DATA", tpm2bEmpty()),
          this.toC("TPML_PCR_SELECTION", encodePcrSelection([])),
          priv,
          pub,
          null,
          null,
          null,
        ),
        "sealing the key",
      );
    } finally {
      sensC.fill(0);
    }
    return { privateBlob: this.take("TPM2B_PRIVATE", priv), publicBlob: this.take("TPM2B_PUBLIC", pub) };
  }

  /** TPM2_Load of a TPM2B_PRIVATE + TPM2B_PUBLIC pair (wire format). */
  load(parent: Handle, session: Handle, privateBlob: Uint8Array, publicBlob: Uint8Array): Handle {
    const handle = new Uint32Array(1);
    check(
      "Esys_Load",
      tss2().esys.Esys_Load(
        this.c,
        parent,
        session,
        ESYS_TR.NONE,
        ESYS_TR.NONE,
        this.toC("TPM2B_PRIVATE", privateBlob),
        this.toC("TPM2B_PUBLIC", publicBlob),
        handle,
      ),
      "loading the sealed object",
      "the sealed blob belongs to another TPM, or the TPM was cleared (its storage seed changed) since enrollment",
    );
    return handle[0]!;
  }

  /** TPM2_Unseal; the caller owns (and should wipe) the returned bytes. */
  unseal(item: Handle, session: Handle): Uint8Array {
    const out = outPtr();
    check(
      "Esys_Unseal",
      tss2().esys.Esys_Unseal(this.c, item, session, ESYS_TR.NONE, ESYS_TR.NONE, out),
      "unsealing",
    );
    const wire = this.take("TPM2B_SENSITIVE_DATA", out, true);
    const data = new TpmReader(wire).tpm2b();
    wire.fill(0);
    return data;
  }

  /** TPM2_ReadPublic: the object's TPMT_PUBLIC. */
  readPublic(handle: Handle): Uint8Array {
    const pub = outPtr();
    check(
      "Esys_ReadPublic",
      tss2().esys.Esys_ReadPublic(this.c, handle, ESYS_TR.NONE, ESYS_TR.NONE, ESYS_TR.NONE, pub, null, null),
    );
    return new TpmReader(this.take("TPM2B_PUBLIC", pub)).tpm2b();
  }

  flush(handle: Handle): void {
    const rc = tss2().esys.Esys_FlushContext(this.c, handle);
    if (rc !== 0) log.debug(`tpm: flushing handle 0x${handle.toString(16)} failed: 0x${rc.toString(16)}`);
  }

  /** Esys_TR_SetAuth: the authValue ESAPI uses for HMACs / PolicyAuthValue on this object. */
  setAuth(handle: Handle, auth: Uint8Array): void {
    const c = this.toC("TPM2B_DIGEST", new TpmWriter().tpm2b(auth).done());
    try {
      check("Esys_TR_SetAuth", tss2().esys.Esys_TR_SetAuth(this.c, handle, c));
    } finally {
      c.fill(0);
    }
  }

  // ---- sessions and policy -----------------------------------------------------------------

  /**
   * TPM2_StartAuthSession with SHA-256. With `saltKey`, the session key is salted by a secret
   * encrypted to that TPM key (so it cannot be derived from the bus traffic) and parameters are
   * encrypted with AES-128-CFB; `attributes` then selects which direction is encrypted.
   */
  startSession(type: keyof typeof TPM2_SE, options: { saltKey?: Handle; attributes?: number } = {}): Handle {
    const handle = new Uint32Array(1);
    const symmetric =
      options.saltKey === undefined
        ? new TpmWriter().u16(TPM2_ALG.NULL).done()
        : new TpmWriter().u16(TPM2_ALG.AES).u16(128).u16(TPM2_ALG.CFB).done();
    check(
      "Esys_StartAuthSession",
      tss2().esys.Esys_StartAuthSession(
        this.c,
        options.saltKey ?? ESYS_TR.NONE,
        ESYS_TR.NONE,
        ESYS_TR.NONE,
        ESYS_TR.NONE,
        ESYS_TR.NONE,
        null,
        TPM2_SE[type],
        this.toC("TPMT_SYM_DEF", symmetric),
        TPM2_ALG.SHA256,
        handle,
      ),
      "starting a session",
    );
    const session = handle[0]!;
    if (options.attributes !== undefined) {
      check(
        "Esys_TRSess_SetAttributes",
        tss2().esys.Esys_TRSess_SetAttributes(
          this.c,
          session,
          options.attributes | SESSION_ATTR.continueSession,
          0xff,
        ),
      );
    }
    return session;
  }

  /** TPM2_PolicyPCR. An empty `pcrDigest` means "the PCRs' current values". */
  policyPcr(session: Handle, selection: PcrSelection[], pcrDigest: Uint8Array = new Uint8Array(0)): void {
    check(
      "Esys_PolicyPCR",
      tss2().esys.Esys_PolicyPCR(
        this.c,
        session,
        ESYS_TR.NONE,
        ESYS_TR.NONE,
        ESYS_TR.NONE,
        this.toC("TPM2B_DIGEST", new TpmWriter().tpm2b(pcrDigest).done()),
        this.toC("TPML_PCR_SELECTION", encodePcrSelection(selection)),
      ),
      "PolicyPCR",
    );
  }

  policyAuthValue(session: Handle): void {
    check(
      "Esys_PolicyAuthValue",
      tss2().esys.Esys_PolicyAuthValue(this.c, session, ESYS_TR.NONE, ESYS_TR.NONE, ESYS_TR.NONE),
    );
  }

  policyGetDigest(session: Handle): Uint8Array {
    const out = outPtr();
    check(
      "Esys_PolicyGetDigest",
      tss2().esys.Esys_PolicyGetDigest(this.c, session, ESYS_TR.NONE, ESYS_TR.NONE, ESYS_TR.NONE, out),
    );
    return new TpmReader(this.take("TPM2B_DIGEST", out)).tpm2b();
  }

  // ---- PCRs ----------------------------------------------------------------------------------

  /** The PCR banks the TPM has allocated (TPM2_GetCapability(TPM2_CAP_PCRS)). */
  pcrBanks(): PcrSelection[] {
    const more = new Uint8Array(1);
    const out = outPtr();
    check(
      "Esys_GetCapability",
      tss2().esys.Esys_GetCapability(
        this.c,
        ESYS_TR.NONE,
        ESYS_TR.NONE,
        ESYS_TR.NONE,
        TPM2_CAP_PCRS,
        0,
        1,
        more,
        out,
      ),
    );
    const r = new TpmReader(this.take("TPMS_CAPABILITY_DATA", out), "TPMS_CAPABILITY_DATA");
    r.u32(); // capability
    return readPcrSelection(r).filter((s) => s.pcrs.length > 0);
  }

  /**
   * TPM2_PCR_Read of every selected PCR. The TPM returns at most 8 digests per call and says
   * which ones, so we repeat with the rest.
   */
  pcrRead(selection: PcrSelection[]): Map<string, Uint8Array> {
    const values = new Map<string, Uint8Array>();
    let pending = selection
      .map((s) => ({ bank: s.bank, pcrs: [...s.pcrs] }))
      .filter((s) => s.pcrs.length > 0);
    while (pending.length > 0) {
      const selOut = outPtr();
      const digests = outPtr();
      const counter = new Uint32Array(1);
      check(
        "Esys_PCR_Read",
        tss2().esys.Esys_PCR_Read(
          this.c,
          ESYS_TR.NONE,
          ESYS_TR.NONE,
          ESYS_TR.NONE,
          this.toC("TPML_PCR_SELECTION", encodePcrSelection(pending)),
          counter,
          selOut,
          digests,
        ),
        "reading PCRs",
      );
      const got = readPcrSelection(new TpmReader(this.take("TPML_PCR_SELECTION", selOut)));
      const list = readDigestList(new TpmReader(this.take("TPML_DIGEST", digests)));
      let i = 0;
      for (const s of got) {
        for (const p of s.pcrs) values.set(`${s.bank}:${p}`, list[i++]!);
      }
      if (i === 0) {
        const missing = pending.map((s) => `${s.bank}:${s.pcrs.join(",")}`).join(" ");
        throw new FdeError(`TPM: PCRs ${missing} cannot be read (is that PCR bank allocated?)`);
      }
      pending = pending
        .map((s) => ({ bank: s.bank, pcrs: s.pcrs.filter((p) => !values.has(`${s.bank}:${p}`)) }))
        .filter((s) => s.pcrs.length > 0);
    }
    return values;
  }

  /** TPM2_PCR_Extend of one bank (measure/ extends the AAEL PCR with it at boot; tests use it too). */
  pcrExtend(pcr: number, bank: PcrBank, digest: Uint8Array): void {
    if (digest.length !== BANK_DIGEST_SIZE[bank])
      throw new FdeError(`TPM: a ${bank} digest has ${BANK_DIGEST_SIZE[bank]} bytes`);
    const values = new TpmWriter().u32(1).u16(BANK_ALG[bank]).raw(digest).done();
    check(
      "Esys_PCR_Extend",
      tss2().esys.Esys_PCR_Extend(
        this.c,
        pcr,
        ESYS_TR.PASSWORD,
        ESYS_TR.NONE,
        ESYS_TR.NONE,
        this.toC("TPML_DIGEST_VALUES", values),
      ),
      `extending PCR ${pcr}`,
    );
  }

  // ---- attestation -------------------------------------------------------------------------

  /** TPM2_Quote with the key's own scheme; returns TPMS_ATTEST and TPMT_SIGNATURE (wire format). */
  quote(
    key: Handle,
    qualifyingData: Uint8Array,
    selection: PcrSelection[],
  ): { attest: Uint8Array; signature: Uint8Array } {
    const attest = outPtr();
    const sig = outPtr();
    check(
      "Esys_Quote",
      tss2().esys.Esys_Quote(
        this.c,
        key,
        ESYS_TR.PASSWORD,
        ESYS_TR.NONE,
        ESYS_TR.NONE,
        this.toC("TPM2B_DATA", new TpmWriter().tpm2b(qualifyingData).done()),
        this.toC("TPMT_SIG_SCHEME", new TpmWriter().u16(TPM2_ALG.NULL).done()),
        this.toC("TPML_PCR_SELECTION", encodePcrSelection(selection)),
        attest,
        sig,
      ),
      "quoting PCRs",
    );
    return {
      attest: new TpmReader(this.take("TPM2B_ATTEST", attest)).tpm2b(),
      signature: this.take("TPMT_SIGNATURE", sig),
    };
  }

  /** An ESYS_TR for a persistent object or NV index, or undefined when the TPM has none there. */
  fromTpmHandle(tpmHandle: number): Handle | undefined {
    const tr = new Uint32Array(1);
    const rc = tss2().esys.Esys_TR_FromTPMPublic(
      this.c,
      tpmHandle,
      ESYS_TR.NONE,
      ESYS_TR.NONE,
      ESYS_TR.NONE,
      tr,
    );
    if (rc !== 0) {
      log.debug(`tpm: nothing usable at handle 0x${tpmHandle.toString(16)}: 0x${rc.toString(16)}`);
      return undefined;
    }
    return tr[0]!;
  }

  /** Esys_TR_Close: forget an ESYS_TR (a persistent object stays in the TPM; no TPM command). */
  closeHandle(handle: Handle): void {
    const slot = new Uint32Array([handle]);
    const rc = tss2().esys.Esys_TR_Close(this.c, slot);
    if (rc !== 0) log.debug(`tpm: closing handle 0x${handle.toString(16)} failed: 0x${rc.toString(16)}`);
  }

  /**
   * The contents of an NV index readable with owner authorization (an EK certificate), or
   * undefined when the index is not defined.
   */
  nvReadOwner(index: number): Uint8Array | undefined {
    const nv = this.fromTpmHandle(index);
    if (nv === undefined) return undefined;
    const pubSlot = outPtr();
    check(
      "Esys_NV_ReadPublic",
      tss2().esys.Esys_NV_ReadPublic(this.c, nv, ESYS_TR.NONE, ESYS_TR.NONE, ESYS_TR.NONE, pubSlot, null),
    );
    const r = new TpmReader(new TpmReader(this.take("TPM2B_NV_PUBLIC", pubSlot)).tpm2b(), "TPMS_NV_PUBLIC");
    r.u32(); // nvIndex
    r.u16(); // nameAlg
    r.u32(); // attributes
    r.tpm2b(); // authPolicy
    const size = r.u16();
    const chunks: Uint8Array[] = [];
    for (let offset = 0; offset < size; offset += NV_CHUNK) {
      const data = outPtr();
      check(
        "Esys_NV_Read",
        tss2().esys.Esys_NV_Read(
          this.c,
          ESYS_TR.RH_OWNER,
          nv,
          ESYS_TR.PASSWORD,
          ESYS_TR.NONE,
          ESYS_TR.NONE,
          Math.min(NV_CHUNK, size - offset),
          offset,
          data,
        ),
        `reading NV index 0x${index.toString(16)}`,
      );
      chunks.push(new TpmReader(this.take("TPM2B_MAX_NV_BUFFER", data)).tpm2b());
    }
    return Buffer.concat(chunks);
  }
}

/** Run `fn` with an open ESAPI context, always closing it. */
export async function withTpm<T>(tcti: string, fn: (esys: Esys) => T | Promise<T>): Promise<T> {
  const esys = Esys.open(tcti);
  try {
    return await fn(esys);
  } finally {
    esys.close();
  }
}
