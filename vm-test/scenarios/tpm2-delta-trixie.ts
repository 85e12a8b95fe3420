import { onGuest } from "../lib/scenario.ts";
import scenario from "./tpm2-delta.ts";

export default onGuest("trixie", scenario);
