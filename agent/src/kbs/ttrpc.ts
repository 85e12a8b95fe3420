/**
 * Minimal ttrpc (containerd's RPC over a unix socket) framing, client and server side:
 * a 10-byte header (payload length u32 BE, stream id u32 BE, type u8, flags u8) followed by a
 * protobuf `ttrpc.Request {service=1, method=2, payload=3, timeout_nano=4}` or
 * `ttrpc.Response {status=1 (google.rpc.Status {code=1, message=2}), payload=2}`.
 */
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";

export const MESSAGE_REQUEST = 1;
export const MESSAGE_RESPONSE = 2;
export const HEADER_SIZE = 10;
/** ttrpc's own limit. */
export const MAX_MESSAGE = 4 << 20;

export interface Frame {
  streamId: number;
  type: number;
  payload: Uint8Array;
}

export function encodeFrame(f: Frame): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + f.payload.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, f.payload.length);
  v.setUint32(4, f.streamId);
  out[8] = f.type;
  out[9] = 0;
  out.set(f.payload, HEADER_SIZE);
  return out;
}

/** Split complete frames off the front of `buf`; returns them and the unconsumed rest. */
export function decodeFrames(buf: Uint8Array): { frames: Frame[]; rest: Uint8Array } {
  const frames: Frame[] = [];
  let at = 0;
  while (buf.length - at >= HEADER_SIZE) {
    const v = new DataView(buf.buffer, buf.byteOffset + at, HEADER_SIZE);
    const length = v.getUint32(0);
    if (length > MAX_MESSAGE) throw new Error(`ttrpc message of ${length} bytes exceeds the 4 MiB limit`);
    if (buf.length - at - HEADER_SIZE < length) break;
    frames.push({
      streamId: v.getUint32(4),
      type: buf[at + 8]!,
      payload: buf.slice(at + HEADER_SIZE, at + HEADER_SIZE + length),
    });
    at += HEADER_SIZE + length;
  }
  return { frames, rest: buf.slice(at) };
}

export interface RpcRequest {
  service: string;
  method: string;
  payload: Uint8Array;
  timeoutNano?: bigint;
}

export function encodeRequest(r: RpcRequest): Uint8Array {
  const w = new BinaryWriter()
    .tag(1, WireType.LengthDelimited)
    .string(r.service)
    .tag(2, WireType.LengthDelimited)
    .string(r.method)
    .tag(3, WireType.LengthDelimited)
    .bytes(r.payload);
  if (r.timeoutNano) w.tag(4, WireType.Varint).int64(r.timeoutNano);
  return w.finish();
}

export function decodeRequest(bytes: Uint8Array): RpcRequest {
  const r = new BinaryReader(bytes);
  const out: RpcRequest = { service: "", method: "", payload: new Uint8Array() };
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === 1) out.service = r.string();
    else if (no === 2) out.method = r.string();
    else if (no === 3) out.payload = r.bytes();
    else if (no === 4) out.timeoutNano = BigInt(r.int64());
    else r.skip(wt);
  }
  return out;
}

export interface RpcResponse {
  /** gRPC status code (0 = OK). */
  code: number;
  message: string;
  payload: Uint8Array;
}

export function encodeResponse(r: RpcResponse): Uint8Array {
  const w = new BinaryWriter();
  if (r.code !== 0 || r.message) {
    const status = new BinaryWriter()
      .tag(1, WireType.Varint)
      .int32(r.code)
      .tag(2, WireType.LengthDelimited)
      .string(r.message);
    w.tag(1, WireType.LengthDelimited).bytes(status.finish());
  }
  return w.tag(2, WireType.LengthDelimited).bytes(r.payload).finish();
}

export function decodeResponse(bytes: Uint8Array): RpcResponse {
  const r = new BinaryReader(bytes);
  const out: RpcResponse = { code: 0, message: "", payload: new Uint8Array() };
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === 1) {
      const s = new BinaryReader(r.bytes());
      while (s.pos < s.len) {
        const [sno, swt] = s.tag();
        if (sno === 1) out.code = s.int32();
        else if (sno === 2) out.message = s.string();
        else s.skip(swt);
      }
    } else if (no === 2) out.payload = r.bytes();
    else r.skip(wt);
  }
  return out;
}

/** A message with one length-delimited field 1 (GetResourceRequest/Response). */
export function encodeField1(value: string | Uint8Array): Uint8Array {
  const w = new BinaryWriter().tag(1, WireType.LengthDelimited);
  return (typeof value === "string" ? w.string(value) : w.bytes(value)).finish();
}

export function decodeField1(bytes: Uint8Array): Uint8Array {
  const r = new BinaryReader(bytes);
  let out: Uint8Array = new Uint8Array();
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === 1) out = r.bytes();
    else r.skip(wt);
  }
  return out;
}
