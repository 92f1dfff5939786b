// Policy rules are built and parsed with libnl's generic message API instead of rtnl_rule, because
// libnl 3.7's rtnl_rule has neither FRA_SUPPRESS_PREFIXLEN nor FIB_RULE_INVERT ("not"), both of which
// the wg-quick-style full-tunnel policy needs.
internal import CNetlink
internal import CTriglavShims
import TriglavCore

enum RuleMessages {
    static func send(socket: OpaquePointer, rule: RoutingRule, add: Bool) throws(NetlinkError) {
        let operation = add ? "adding" : "deleting"
        let subject = "rule \(rule)"
        if add && rule.action == .lookup && rule.table == nil {
            throw .invalidArgument(operation: operation, subject: subject, reason: "a lookup rule needs a table")
        }
        for prefix in [rule.source, rule.destination].compactMap({ $0 })
            where AddressFamily(of: prefix.address) != rule.family {
            throw .invalidArgument(operation: operation, subject: subject, reason: "prefix \(prefix) is not \(rule.family)")
        }
        let type = Int32(add ? RTM_NEWRULE : RTM_DELRULE)
        let flags = add ? Int32(NLM_F_CREATE | NLM_F_EXCL) : 0
        guard let message = nlmsg_alloc_simple(type, flags) else {
            throw .failed(operation: operation, subject: subject, code: NLE_NOMEM, message: Libnl.message(-NLE_NOMEM))
        }
        defer { nlmsg_free(message) }

        var header = fib_rule_hdr()
        header.family = UInt8(rule.family.socketFamily)
        header.action = rule.action.rawValue
        header.flags = rule.invert ? tg_fib_rule_invert() : 0
        if let table = rule.table, table < 256 { header.table = UInt8(table) }
        header.src_len = UInt8(rule.source?.length ?? 0)
        header.dst_len = UInt8(rule.destination?.length ?? 0)
        var failures: Int32 = 0
        failures |= nlmsg_append(message, &header, MemoryLayout<fib_rule_hdr>.size, 4)

        if let table = rule.table { failures |= nla_put_u32(message, Int32(FRA_TABLE), table) }
        if let priority = rule.priority { failures |= nla_put_u32(message, Int32(FRA_PRIORITY), priority) }
        if let mark = rule.firewallMark { failures |= nla_put_u32(message, Int32(FRA_FWMARK), mark) }
        if let mask = rule.firewallMask { failures |= nla_put_u32(message, Int32(FRA_FWMASK), mask) }
        if let length = rule.suppressPrefixLength {
            failures |= nla_put_u32(message, Int32(FRA_SUPPRESS_PREFIXLEN), length)
        }
        if let proto = rule.protocol { failures |= nla_put_u8(message, Int32(FRA_PROTOCOL), proto) }
        if let name = rule.inputInterface { failures |= nla_put_string(message, Int32(FRA_IIFNAME), name) }
        if let name = rule.outputInterface { failures |= nla_put_string(message, Int32(FRA_OIFNAME), name) }
        for (attribute, prefix) in [(Int32(FRA_SRC), rule.source), (Int32(FRA_DST), rule.destination)] {
            guard let prefix else { continue }
            var bytes = prefix.address.bytes
            failures |= bytes.withUnsafeMutableBytes { nla_put(message, attribute, Int32($0.count), $0.baseAddress) }
        }
        if failures != 0 {
            throw .failed(operation: operation, subject: subject, code: NLE_NOMEM, message: "netlink message too large")
        }
        let sent = nl_send_auto(socket, message)
        try Libnl.check(sent, operation, subject)
        try Libnl.check(nl_wait_for_ack(socket), operation, subject)
    }

    private final class Collector {
        var rules: [RoutingRule] = []
        let family: AddressFamily?
        init(family: AddressFamily?) { self.family = family }
    }

    static func dump(socket: OpaquePointer, family: AddressFamily?) throws(NetlinkError) -> [RoutingRule] {
        let requested = family?.socketFamily ?? AF_UNSPEC_VALUE
        try Libnl.check(nl_rtgen_request(socket, Int32(RTM_GETRULE), requested, Int32(NLM_F_DUMP)), "listing", "rules")
        let collector = Collector(family: family)
        let base = nl_socket_get_cb(socket)
        guard let callbacks = nl_cb_clone(base) else {
            nl_cb_put(base)
            throw .failed(operation: "listing", subject: "rules", code: NLE_NOMEM, message: Libnl.message(-NLE_NOMEM))
        }
        nl_cb_put(base)
        defer { nl_cb_put(callbacks) }
        let context = Unmanaged.passUnretained(collector).toOpaque()
        nl_cb_set(callbacks, NL_CB_VALID, NL_CB_CUSTOM, { message, context in
            guard let message, let context else { return Int32(NL_SKIP.rawValue) }
            let collector = Unmanaged<Collector>.fromOpaque(context).takeUnretainedValue()
            if let rule = RuleMessages.parse(message), collector.family == nil || rule.family == collector.family {
                collector.rules.append(rule)
            }
            return Int32(NL_OK.rawValue)
        }, context)
        let rc = withExtendedLifetime(collector) { nl_recvmsgs(socket, callbacks) }
        try Libnl.check(rc, "listing", "rules")
        return collector.rules
    }

    static let attributeMax = Int(__FRA_MAX) - 1

    static func parse(_ message: OpaquePointer) -> RoutingRule? {
        guard let header = nlmsg_hdr(message), header.pointee.nlmsg_type == UInt16(RTM_NEWRULE),
              let data = nlmsg_data(header) else { return nil }
        guard Int(header.pointee.nlmsg_len) >= MemoryLayout<nlmsghdr>.size + MemoryLayout<fib_rule_hdr>.size else {
            return nil
        }
        let rule = data.loadUnaligned(as: fib_rule_hdr.self)
        guard let family = AddressFamily(socketFamily: Int32(rule.family)) else { return nil }
        var attributes = [UnsafeMutablePointer<nlattr>?](repeating: nil, count: attributeMax + 1)
        guard nlmsg_parse(header, Int32(MemoryLayout<fib_rule_hdr>.size), &attributes, Int32(attributeMax), nil) >= 0 else {
            return nil
        }
        func u32(_ attribute: Int) -> UInt32? { attributes[attribute].map { nla_get_u32($0) } }
        func string(_ attribute: Int) -> String? { attributes[attribute].flatMap { nla_get_string($0) }.map { String(cString: $0) } }
        func prefix(_ attribute: Int, length: UInt8) -> IPPrefix? {
            guard let attr = attributes[attribute], let raw = nla_data(attr),
                  let address = IPAddress(bytes: UnsafeRawBufferPointer(start: raw, count: Int(nla_len(attr)))) else { return nil }
            return try? IPPrefix(address: address, length: Int(length))
        }
        var result = RoutingRule(
            family: family,
            priority: u32(Int(FRA_PRIORITY)) ?? 0,
            firewallMark: u32(Int(FRA_FWMARK)),
            firewallMask: u32(Int(FRA_FWMASK)),
            table: u32(Int(FRA_TABLE)) ?? UInt32(rule.table),
            action: RuleAction(rawValue: rule.action) ?? .nop,
            suppressPrefixLength: u32(Int(FRA_SUPPRESS_PREFIXLEN)).flatMap { $0 == UInt32.max ? nil : $0 },
            invert: rule.flags & tg_fib_rule_invert() != 0,
            protocol: attributes[Int(FRA_PROTOCOL)].map { nla_get_u8($0) },
            source: prefix(Int(FRA_SRC), length: rule.src_len),
            destination: prefix(Int(FRA_DST), length: rule.dst_len),
            inputInterface: string(Int(FRA_IIFNAME)),
            outputInterface: string(Int(FRA_OIFNAME)))
        if result.action != .lookup && result.table == 0 { result.table = nil }
        return result
    }
}
