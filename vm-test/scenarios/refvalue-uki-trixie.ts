import { onGuest } from "../lib/scenario.ts";
import scenario from "./refvalue-uki.ts";

export default onGuest("trixie", scenario);
