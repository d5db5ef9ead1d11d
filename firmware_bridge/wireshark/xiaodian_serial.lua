-- Wireshark/tshark dissector for the xiaodian fridge serial protocol 1.0 (docs/protocol.md).
--
-- Captures from `xiaodian serial capture` are pcapng with one packet per frame as it was on
-- the wire (COBS bytes and the 0x00 delimiter) on link type DLT_USER0 (147), the direction
-- in epb_flags; scanner lines are on DLT_USER1 (148).
--
--   tshark -X lua_script:firmware_bridge/wireshark/xiaodian_serial.lua -r cap.pcapng -V
--   (or copy this file into ~/.local/lib/wireshark/plugins/)
--
-- Field names follow firmware_bridge/codec.py's decoded names: xiaodian.type_name is "temp",
-- "hello", ...; every message field is xiaodian.<name>; the five firmware-update messages
-- (fw_offer, fw_chunk, fw_status, fw_commit, fw_result: fwmsg.py) have xiaodian.fw.<name>. A frame the decoder would reject is
-- marked with xiaodian.error ("cobs", "short", "crc", "version", "length") as codec.py counts it.

local p = Proto("xiaodian", "xiaodian fridge serial protocol")
local f = p.fields

local TYPES = {
    [0x01] = "hello", [0x02] = "heartbeat", [0x10] = "temp", [0x11] = "door",
    [0x12] = "compressor", [0x13] = "power", [0x14] = "defrost", [0x15] = "lanes",
    [0x16] = "lock", [0x20] = "get_hello", [0x21] = "receipt", [0x30] = "set_point",
    [0x31] = "defrost_now", [0x32] = "unlock", [0x33] = "reboot", [0x34] = "tare",
    [0x35] = "calibrate", [0x7F] = "ack",
    [0x40] = "fw_offer", [0x41] = "fw_chunk", [0x42] = "fw_status", [0x43] = "fw_commit",
    [0x44] = "fw_result",
}
local RESET = { [0] = "unknown", "power_on", "hard", "watchdog", "deep_sleep", "soft", "brownout" }
local PROBE = { [0] = "ok", "crc", "missing", "suspect" }
local COMPRESSOR = { [0] = "thermostat", "min_off_time", "defrost_start", "defrost_end",
    "command", "power", "fault" }
local DEFROST = { [0] = "schedule", "command", "temperature", "timeout", "power", "fault" }
local LOCK = { [0] = "boot", "command", "door_closed", "timeout" }
local ACK = { [0] = "ok", "duplicate", "unknown_type", "bad_payload", "busy", "failed" }
-- firmware update (protocol §4.10, firmware_bridge/fwmsg.py)
local FW_STATE = { [0] = "idle", "receiving", "complete", "trial", "healthy" }
local FW_ACTION = { [0] = "install", "confirm", "abort" }
local FW_RESULT = { [0] = "accepted", "installed", "confirmed", "rolled_back", "bad_hash",
    "wrong_hardware", "downgrade", "too_large", "bad_manifest", "unknown_image", "incomplete",
    "io_error", "busy", "aborted", "bad_signature", "agent_too_old",
    "device_bad_signature" }

local function name(names, code)
    return names[code] or ("unknown_" .. code)
end

f.dir = ProtoField.string("xiaodian.dir", "Direction")
f.error = ProtoField.string("xiaodian.error", "Rejected")
f.version = ProtoField.uint8("xiaodian.version", "Version", base.HEX)
f.type = ProtoField.uint8("xiaodian.type", "Type", base.HEX, TYPES)
f.type_name = ProtoField.string("xiaodian.type_name", "Message")
f.flags = ProtoField.uint8("xiaodian.flags", "Flags", base.HEX)
f.flag_ack = ProtoField.bool("xiaodian.flags.ack_requested", "ACK requested", 8, nil, 0x01)
f.flag_retx = ProtoField.bool("xiaodian.flags.retransmission", "Retransmission", 8, nil, 0x02)
f.flag_reply = ProtoField.bool("xiaodian.flags.reply", "Reply", 8, nil, 0x04)
f.seq = ProtoField.uint16("xiaodian.seq", "Sequence")
f.length = ProtoField.uint8("xiaodian.length", "Payload length")
f.crc = ProtoField.uint32("xiaodian.crc", "CRC-32", base.HEX)
f.dev_ms = ProtoField.uint64("xiaodian.dev_ms", "Device ms since boot")
-- HELLO
f.protocol = ProtoField.string("xiaodian.protocol", "Protocol")
f.firmware = ProtoField.string("xiaodian.firmware", "Firmware")
f.reset_cause = ProtoField.string("xiaodian.reset_cause", "Reset cause")
f.capabilities = ProtoField.uint16("xiaodian.capabilities", "Capabilities", base.HEX)
f.probe_count = ProtoField.uint8("xiaodian.probe_count", "Probes fitted")
f.lane_count = ProtoField.uint8("xiaodian.lane_count", "Lanes")
f.boot_count = ProtoField.uint32("xiaodian.boot_count", "Boot count")
f.device_id = ProtoField.string("xiaodian.device_id", "Device id")
-- HEARTBEAT
f.free_mem = ProtoField.uint32("xiaodian.free_mem", "Free memory")
f.rx_errors = ProtoField.uint16("xiaodian.rx_errors", "Rejected host frames")
f.probe_errors = ProtoField.uint16("xiaodian.probe_errors", "Probe read errors")
f.tx_dropped = ProtoField.uint16("xiaodian.tx_dropped", "Frames dropped (log full)")
-- TEMP
f.count = ProtoField.uint8("xiaodian.count", "Count")
f.probe = ProtoField.uint8("xiaodian.probe", "Probe")
f.probe_status = ProtoField.string("xiaodian.probe_status", "Probe status")
f.celsius = ProtoField.double("xiaodian.celsius", "Temperature (°C)")
-- events
f.open = ProtoField.bool("xiaodian.open", "Door open")
f.duration_ms = ProtoField.uint32("xiaodian.duration_ms", "Previous state lasted (ms)")
f.on = ProtoField.bool("xiaodian.on", "Compressor running")
f.reason = ProtoField.string("xiaodian.reason", "Reason")
f.mains = ProtoField.bool("xiaodian.mains", "Mains present")
f.backup_mv = ProtoField.uint16("xiaodian.backup_mv", "Backup supply (mV)")
f.active = ProtoField.bool("xiaodian.active", "Defrost active")
f.locked = ProtoField.bool("xiaodian.locked", "Locked")
f.lane = ProtoField.uint8("xiaodian.lane", "Lane")
f.grams = ProtoField.int32("xiaodian.grams", "Grams")
f.stable = ProtoField.bool("xiaodian.stable", "Stable")
-- host to device
f.seqs = ProtoField.uint16("xiaodian.receipt_seq", "Receipted seq")
f.tenths_c = ProtoField.int16("xiaodian.tenths_c", "Set point (0.1 °C)")
f.minutes = ProtoField.uint16("xiaodian.minutes", "Minutes")
f.seconds = ProtoField.uint16("xiaodian.seconds", "Seconds")
f.acked_seq = ProtoField.uint16("xiaodian.acked_seq", "Acknowledged seq")
f.status = ProtoField.string("xiaodian.status", "ACK status")
-- firmware update: xiaodian.fw.<name>, fwmsg.decode's names (data shown as its length)
f.fw_sha256 = ProtoField.bytes("xiaodian.fw.sha256", "Image SHA-256", base.NONE)
f.fw_size = ProtoField.uint32("xiaodian.fw.size", "Image size")
f.fw_version = ProtoField.string("xiaodian.fw.version", "Image version")
f.fw_hardware = ProtoField.string("xiaodian.fw.hardware", "Hardware")
f.fw_offset = ProtoField.uint32("xiaodian.fw.offset", "Offset")
f.fw_tag = ProtoField.uint32("xiaodian.fw.tag", "Image tag", base.HEX)
f.fw_data_len = ProtoField.uint16("xiaodian.fw.data_len", "Chunk bytes")
f.fw_state = ProtoField.string("xiaodian.fw.state", "Update state")
f.fw_next_offset = ProtoField.uint32("xiaodian.fw.next_offset", "Next offset")
f.fw_action = ProtoField.string("xiaodian.fw.action", "Commit action")
f.fw_result = ProtoField.string("xiaodian.fw.result", "Result")

-- CRC-32/ISO-HDLC, table-driven (bit32: Wireshark's Lua is 5.2)
local CRC_TABLE = {}
for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
        if bit32.band(c, 1) == 1 then
            c = bit32.bxor(bit32.rshift(c, 1), 0xEDB88320)
        else
            c = bit32.rshift(c, 1)
        end
    end
    CRC_TABLE[i] = c
end

local function crc32(bytes, n)
    local c = 0xFFFFFFFF
    for i = 0, n - 1 do
        c = bit32.bxor(CRC_TABLE[bit32.band(bit32.bxor(c, bytes:get_index(i)), 0xFF)],
            bit32.rshift(c, 8))
    end
    return bit32.bxor(c, 0xFFFFFFFF)
end

-- COBS decode of `raw` (a ByteArray without the delimiter); nil if invalid (protocol §2.4)
local function cobs_decode(raw)
    local out = {}
    local i, n = 0, raw:len()
    while i < n do
        local code = raw:get_index(i)
        if code == 0 or i + code > n then return nil end -- fewer than code - 1 bytes left
        for k = 1, code - 1 do out[#out + 1] = raw:get_index(i + k) end
        i = i + code
        if code < 0xFF and i < n then out[#out + 1] = 0 end
    end
    local body = ByteArray.new()
    body:set_size(#out)
    for k = 1, #out do body:set_index(k - 1, out[k]) end
    return body
end

local function le_double_celsius(t)
    return t:le_int() / 16.0
end

local payloads = {}

payloads[0x01] = function(t, tree)
    if t:len() < 23 then return false end
    tree:add_le(f.dev_ms, t(0, 8))
    tree:add(f.protocol, t(8, 2), t(8, 1):uint() .. "." .. t(9, 1):uint())
    tree:add(f.firmware, t(10, 3),
        t(10, 1):uint() .. "." .. t(11, 1):uint() .. "." .. t(12, 1):uint())
    tree:add(f.reset_cause, t(13, 1), name(RESET, t(13, 1):uint()))
    tree:add_le(f.capabilities, t(14, 2))
    tree:add(f.probe_count, t(16, 1))
    tree:add(f.lane_count, t(17, 1))
    tree:add_le(f.boot_count, t(18, 4))
    local id_len = t(22, 1):uint()
    if t:len() < 23 + id_len then return false end
    if id_len > 0 then tree:add(f.device_id, t(23, id_len), t(23, id_len):string(ENC_UTF_8)) end
    return true
end

payloads[0x02] = function(t, tree)
    if t:len() < 18 then return false end
    tree:add_le(f.dev_ms, t(0, 8))
    tree:add_le(f.free_mem, t(8, 4))
    tree:add_le(f.rx_errors, t(12, 2))
    tree:add_le(f.probe_errors, t(14, 2))
    tree:add_le(f.tx_dropped, t(16, 2))
    return true
end

payloads[0x10] = function(t, tree)
    if t:len() < 9 then return false end
    tree:add_le(f.dev_ms, t(0, 8))
    local count = t(8, 1):uint()
    tree:add(f.count, t(8, 1))
    if t:len() < 9 + 4 * count then return false end
    for k = 0, count - 1 do
        local r = t(9 + 4 * k, 4)
        local status = r(1, 1):uint()
        local sub = tree:add(p, r, "Probe " .. r(0, 1):uint() .. ": " .. name(PROBE, status))
        sub:add(f.probe, r(0, 1))
        sub:add(f.probe_status, r(1, 1), name(PROBE, status))
        if status == 0 or status == 3 then
            sub:add(f.celsius, r(2, 2), le_double_celsius(r(2, 2)))
        end
    end
    return true
end

local function event(field, reasons)
    return function(t, tree)
        if t:len() < 10 then return false end
        tree:add_le(f.dev_ms, t(0, 8))
        tree:add(field, t(8, 1), t(8, 1):uint() ~= 0)
        tree:add(f.reason, t(9, 1), name(reasons, t(9, 1):uint()))
        return true
    end
end
payloads[0x12] = event(f.on, COMPRESSOR)
payloads[0x14] = event(f.active, DEFROST)
payloads[0x16] = event(f.locked, LOCK)

payloads[0x11] = function(t, tree)
    if t:len() < 13 then return false end
    tree:add_le(f.dev_ms, t(0, 8))
    tree:add(f.open, t(8, 1), t(8, 1):uint() ~= 0)
    tree:add_le(f.duration_ms, t(9, 4))
    return true
end

payloads[0x13] = function(t, tree)
    if t:len() < 11 then return false end
    tree:add_le(f.dev_ms, t(0, 8))
    tree:add(f.mains, t(8, 1), t(8, 1):uint() ~= 0)
    tree:add_le(f.backup_mv, t(9, 2))
    return true
end

payloads[0x15] = function(t, tree)
    if t:len() < 9 then return false end
    tree:add_le(f.dev_ms, t(0, 8))
    local count = t(8, 1):uint()
    tree:add(f.count, t(8, 1))
    if t:len() < 9 + 5 * count then return false end
    for k = 0, count - 1 do
        local r = t(9 + 5 * k, 5)
        local sub = tree:add(p, r, "Lane " .. k)
        sub:add(f.lane, r(0, 0), k)
        sub:add_le(f.grams, r(0, 4))
        sub:add(f.stable, r(4, 1), bit32.band(r(4, 1):uint(), 1) == 1)
    end
    return true
end

payloads[0x20] = function(t, tree) return true end -- GET_HELLO: empty
payloads[0x33] = function(t, tree) return true end -- REBOOT: empty

payloads[0x21] = function(t, tree)
    if t:len() < 5 then return false end
    tree:add_le(f.boot_count, t(0, 4))
    local count = t(4, 1):uint()
    tree:add(f.count, t(4, 1))
    if t:len() < 5 + 2 * count then return false end
    for k = 0, count - 1 do tree:add_le(f.seqs, t(5 + 2 * k, 2)) end
    return true
end

local function one(field, size)
    return function(t, tree)
        if t:len() < size then return false end
        tree:add_le(field, t(0, size))
        return true
    end
end
payloads[0x30] = one(f.tenths_c, 2)
payloads[0x31] = one(f.minutes, 2)
payloads[0x32] = one(f.seconds, 2)
payloads[0x34] = one(f.lane, 1)

payloads[0x35] = function(t, tree)
    if t:len() < 5 then return false end
    tree:add(f.lane, t(0, 1))
    tree:add_le(f.grams, t(1, 4))
    return true
end

payloads[0x7F] = function(t, tree)
    if t:len() < 3 then return false end
    tree:add_le(f.acked_seq, t(0, 2))
    tree:add(f.status, t(2, 1), name(ACK, t(2, 1):uint()))
    return true
end

payloads[0x40] = function(t, tree) -- FW_OFFER
    if t:len() < 40 then return false end
    tree:add(f.fw_sha256, t(0, 32))
    tree:add_le(f.fw_size, t(32, 4))
    tree:add(f.fw_version, t(36, 3),
        t(36, 1):uint() .. "." .. t(37, 1):uint() .. "." .. t(38, 1):uint())
    local hw_len = t(39, 1):uint()
    if t:len() < 40 + hw_len then return false end
    if hw_len > 0 then tree:add(f.fw_hardware, t(40, hw_len), t(40, hw_len):string(ENC_UTF_8)) end
    return true
end

payloads[0x41] = function(t, tree) -- FW_CHUNK
    if t:len() < 9 then return false end
    tree:add_le(f.fw_offset, t(0, 4))
    tree:add_le(f.fw_tag, t(4, 4))
    tree:add(f.fw_data_len, t(8, t:len() - 8), t:len() - 8)
    return true
end

payloads[0x42] = function(t, tree) -- FW_STATUS
    if t:len() < 49 then return false end
    tree:add_le(f.dev_ms, t(0, 8))
    tree:add(f.fw_state, t(8, 1), name(FW_STATE, t(8, 1):uint()))
    tree:add(f.fw_sha256, t(9, 32))
    tree:add_le(f.fw_next_offset, t(41, 4))
    tree:add_le(f.fw_size, t(45, 4))
    return true
end

payloads[0x43] = function(t, tree) -- FW_COMMIT
    if t:len() < 33 then return false end
    tree:add(f.fw_sha256, t(0, 32))
    tree:add(f.fw_action, t(32, 1), name(FW_ACTION, t(32, 1):uint()))
    return true
end

payloads[0x44] = function(t, tree) -- FW_RESULT
    if t:len() < 41 then return false end
    tree:add_le(f.dev_ms, t(0, 8))
    tree:add(f.fw_sha256, t(8, 32))
    tree:add(f.fw_result, t(40, 1), name(FW_RESULT, t(40, 1):uint()))
    return true
end

local function reject(tree, pinfo, why)
    tree:add(f.error, why)
    pinfo.cols.info:append(" [rejected: " .. why .. "]")
end

function p.dissector(tvb, pinfo, root)
    pinfo.cols.protocol = "XIAODIAN"
    local tree = root:add(p, tvb())
    local dir = pinfo.p2p_dir == 1 and "from device" or (pinfo.p2p_dir == 0 and "to device" or "")
    if dir ~= "" then tree:add(f.dir, dir) end
    pinfo.cols.info = (pinfo.p2p_dir == 0 and "-> " or "<- ")
    local n = tvb:len()
    if n > 0 and tvb(n - 1, 1):uint() == 0 then n = n - 1 end -- the delimiter
    if n == 0 then
        pinfo.cols.info:append("empty (line wake)")
        return
    end
    local body = cobs_decode(tvb(0, n):bytes())
    if body == nil then return reject(tree, pinfo, "cobs") end
    if body:len() < 10 then return reject(tree, pinfo, "short") end
    local b = body:tvb("Frame body")
    local len = body:len()
    local crc = b(len - 4, 4):le_uint()
    if crc32(body, len - 4) ~= crc then return reject(tree, pinfo, "crc") end
    local version = b(0, 1):uint()
    tree:add(f.version, b(0, 1))
    if bit32.rshift(version, 4) ~= 1 then return reject(tree, pinfo, "version") end
    local mtype = b(1, 1):uint()
    local type_name = TYPES[mtype] or string.format("0x%02x", mtype)
    tree:add(f.type, b(1, 1))
    tree:add(f.type_name, b(1, 1), type_name)
    local flags = tree:add(f.flags, b(2, 1))
    flags:add(f.flag_ack, b(2, 1))
    flags:add(f.flag_retx, b(2, 1))
    flags:add(f.flag_reply, b(2, 1))
    tree:add_le(f.seq, b(3, 2))
    tree:add(f.length, b(5, 1))
    tree:add_le(f.crc, b(len - 4, 4))
    if b(5, 1):uint() ~= len - 10 then return reject(tree, pinfo, "length") end
    pinfo.cols.info:append(type_name .. " #" .. b(3, 2):le_uint())
    local decode = payloads[mtype]
    if decode == nil or mtype == 0x20 or mtype == 0x33 then return end -- no payload to show
    if len == 10 or not decode(b(6, len - 10), tree) then
        tree:add_expert_info(PI_MALFORMED, PI_ERROR, "payload shorter than its fixed part")
    end
end

-- Scanner lines (DLT_USER1): AIM identifier and data, as the scanner sent them.
local scan = Proto("xiaodian_scan", "xiaodian barcode scanner line")
local line_field = ProtoField.string("xiaodian_scan.line", "Line")
scan.fields = { line_field }

function scan.dissector(tvb, pinfo, root)
    pinfo.cols.protocol = "XIAODIAN-SCAN"
    local text = tvb():string():gsub("[\r\n]+$", "")
    root:add(scan, tvb()):add(line_field, tvb(), text)
    pinfo.cols.info = text
end

local encap = DissectorTable.get("wtap_encap")
encap:add(wtap_encaps.USER0, p)
encap:add(wtap_encaps.USER1, scan)
