import { onGuest } from "../lib/scenario.ts";
import scenario from "./overlay-disk.ts";

export default onGuest("trixie", scenario);
