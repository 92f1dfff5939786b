function __triglav_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __triglav_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __triglav_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __triglav_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __triglav_parse_tokens -S
    set -l unparsed_tokens (__triglav_tokens -pc)
    switch $unparsed_tokens[1]
    case 'triglav'
        __triglav_parse_subcommand 0 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'status'
            __triglav_parse_subcommand 0 'bus-address=' 'timeout=' 'json' 'counters' 'version' 'h/help'
        case 'uplinks'
            __triglav_parse_subcommand 0 'bus-address=' 'timeout=' 'json' 'version' 'h/help'
        case 'connect'
            __triglav_parse_subcommand 1 'bus-address=' 'timeout=' 'scheduler=' 'server=' 'transport=' 'full-tunnel=' 'version' 'h/help'
        case 'disconnect'
            __triglav_parse_subcommand 0 'bus-address=' 'timeout=' 'version' 'h/help'
        case 'uplink'
            __triglav_parse_subcommand 0 'version' 'h/help'
            switch $unparsed_tokens[1]
            case 'add'
                __triglav_parse_subcommand 1 'bus-address=' 'timeout=' 'tier=' 'metered=' 'enabled=' 'transport=' 'version' 'h/help'
            case 'remove'
                __triglav_parse_subcommand 1 'bus-address=' 'timeout=' 'version' 'h/help'
            case 'set'
                __triglav_parse_subcommand 1 'bus-address=' 'timeout=' 'tier=' 'metered=' 'enabled=' 'transport=' 'version' 'h/help'
            end
        case 'scheduler'
            __triglav_parse_subcommand 1 'bus-address=' 'timeout=' 'json' 'version' 'h/help'
        case 'reload'
            __triglav_parse_subcommand 0 'bus-address=' 'timeout=' 'version' 'h/help'
        case 'monitor'
            __triglav_parse_subcommand 0 'bus-address=' 'timeout=' 'json' 'events=' 'version' 'h/help'
        case 'keygen'
            __triglav_parse_subcommand 1 'force' 'version' 'h/help'
        case 'pubkey'
            __triglav_parse_subcommand 1 'version' 'h/help'
        case 'help'
            __triglav_parse_subcommand -r 1 'version'
        end
    end
end

function __triglav_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __triglav_parse_subcommand -S -a positional_count
    argparse -s r -- $argv
    set -l option_specs $argv[2..]
    set -l is_repeating_positional $_flag_r
    set -el _flag_r
    set -a commands $unparsed_tokens[1]
    set positional_index 0
    while true
        set -e unparsed_tokens[1]
        argparse -sn "$commands" $option_specs -- $unparsed_tokens 2> /dev/null
        set unparsed_tokens $argv
        set positional_index (math $positional_index + 1)
        for non_repeating_flag_or_option in $non_repeating_flags_or_options
            if set -ql "_flag_$(string replace -a - _ -- $non_repeating_flag_or_option)"
                set non_repeating_flags_or_options_absent 1
                break
            end
        end
        test (count $unparsed_tokens) -eq 0 -o \( -z "$is_repeating_positional" -a "$positional_index" -gt "$positional_count" \) && break
    end
end

function __triglav_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __triglav_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__triglav_tokens -p)
    if test -z "$(__triglav_tokens -t)"
        set -l index (count (__triglav_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'triglav' -f
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav" version' -l 'version' -d 'Show the version.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_positional "triglav" -eq 1' -fa 'status' -d 'Show the tunnel, its uplinks and (server role) clients.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_positional "triglav" -eq 1' -fa 'uplinks' -d 'List uplinks: interface, kind, tier, state, RTT, loss, send capacity estimate, receive rate, tx/rx.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_positional "triglav" -eq 1' -fa 'connect' -d 'Bring the tunnel up with a profile.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_positional "triglav" -eq 1' -fa 'disconnect' -d 'Take the tunnel down.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_positional "triglav" -eq 1' -fa 'uplink' -d 'Add, remove or configure an uplink.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_positional "triglav" -eq 1' -fa 'scheduler' -d 'Show or set the packet scheduler.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_positional "triglav" -eq 1' -fa 'reload' -d 'Make the daemon re-read its configuration.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_positional "triglav" -eq 1' -fa 'monitor' -d 'Watch the daemon live (updates come from D-Bus signals, not polling).'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_positional "triglav" -eq 1' -fa 'keygen' -d 'Write a new private key file (mode 0600) and print its public key.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_positional "triglav" -eq 1' -fa 'pubkey' -d 'Print the public key of a private key file (or of a key read from standard input).'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_positional "triglav" -eq 1' -fa 'help' -d 'Show subcommand help information.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav status" bus-address' -l 'bus-address' -d 'D-Bus address of the system bus.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav status" timeout' -l 'timeout' -d 'Seconds to wait for the daemon\'s reply.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav status" json' -l 'json' -d 'Print JSON; keys are the D-Bus property names.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav status" counters' -l 'counters' -d 'Also list the data plane\'s counters: drops, repairs, reordering, offloads (Manager1/Server1.Counters).'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav status" version' -l 'version' -d 'Show the version.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav status" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplinks" bus-address' -l 'bus-address' -d 'D-Bus address of the system bus.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplinks" timeout' -l 'timeout' -d 'Seconds to wait for the daemon\'s reply.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplinks" json' -l 'json' -d 'Print JSON; keys are the D-Bus property names.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplinks" version' -l 'version' -d 'Show the version.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplinks" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav connect" bus-address' -l 'bus-address' -d 'D-Bus address of the system bus.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav connect" timeout' -l 'timeout' -d 'Seconds to wait for the daemon\'s reply.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav connect" scheduler' -l 'scheduler' -d 'Scheduler to start with.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav connect" server' -l 'server' -d 'Server endpoint host:port, overriding the profile\'s.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav connect" transport' -l 'transport' -d 'Transport for all uplinks (udp or tcp).' -rfka 'udp tcp'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav connect" full-tunnel' -l 'full-tunnel' -d 'Send all traffic through the tunnel (yes) or only the configured routes (no).' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav connect" version' -l 'version' -d 'Show the version.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav connect" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav disconnect" bus-address' -l 'bus-address' -d 'D-Bus address of the system bus.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav disconnect" timeout' -l 'timeout' -d 'Seconds to wait for the daemon\'s reply.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav disconnect" version' -l 'version' -d 'Show the version.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav disconnect" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink" version' -l 'version' -d 'Show the version.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_positional "triglav uplink" -eq 1' -fa 'add' -d 'Use a network interface as an uplink (a manual uplink).'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_positional "triglav uplink" -eq 1' -fa 'remove' -d 'Stop using an uplink.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_positional "triglav uplink" -eq 1' -fa 'set' -d 'Change an uplink\'s tier, metered flag, enabled flag or transport.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink add" bus-address' -l 'bus-address' -d 'D-Bus address of the system bus.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink add" timeout' -l 'timeout' -d 'Seconds to wait for the daemon\'s reply.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink add" tier' -l 'tier' -d 'primary, secondary, backup or never.' -rfka 'primary secondary backup never'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink add" metered' -l 'metered' -d 'Whether the link costs money per byte (yes/no).' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink add" enabled' -l 'enabled' -d 'Whether the uplink may carry traffic (yes/no).' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink add" transport' -l 'transport' -d 'udp (with the TCP fallback) or tcp (TCP only).' -rfka 'udp tcp'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink add" version' -l 'version' -d 'Show the version.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink add" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink remove" bus-address' -l 'bus-address' -d 'D-Bus address of the system bus.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink remove" timeout' -l 'timeout' -d 'Seconds to wait for the daemon\'s reply.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink remove" version' -l 'version' -d 'Show the version.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink remove" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink set" bus-address' -l 'bus-address' -d 'D-Bus address of the system bus.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink set" timeout' -l 'timeout' -d 'Seconds to wait for the daemon\'s reply.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink set" tier' -l 'tier' -d 'primary, secondary, backup or never.' -rfka 'primary secondary backup never'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink set" metered' -l 'metered' -d 'Whether the link costs money per byte (yes/no).' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink set" enabled' -l 'enabled' -d 'Whether the uplink may carry traffic (yes/no).' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink set" transport' -l 'transport' -d 'udp (with the TCP fallback) or tcp (TCP only).' -rfka 'udp tcp'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink set" version' -l 'version' -d 'Show the version.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav uplink set" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav scheduler" bus-address' -l 'bus-address' -d 'D-Bus address of the system bus.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav scheduler" timeout' -l 'timeout' -d 'Seconds to wait for the daemon\'s reply.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav scheduler" json' -l 'json' -d 'Print JSON (when reading).'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav scheduler" version' -l 'version' -d 'Show the version.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav scheduler" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav reload" bus-address' -l 'bus-address' -d 'D-Bus address of the system bus.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav reload" timeout' -l 'timeout' -d 'Seconds to wait for the daemon\'s reply.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav reload" version' -l 'version' -d 'Show the version.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav reload" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav monitor" bus-address' -l 'bus-address' -d 'D-Bus address of the system bus.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav monitor" timeout' -l 'timeout' -d 'Seconds to wait for the daemon\'s reply.' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav monitor" json' -l 'json' -d 'Print one JSON object per event.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav monitor" events' -l 'events' -d 'Exit after this many events (for scripts).' -rfka ''
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav monitor" version' -l 'version' -d 'Show the version.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav monitor" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav keygen" force' -l 'force' -d 'Overwrite an existing key file (the old key is lost).'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav keygen" version' -l 'version' -d 'Show the version.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav keygen" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav pubkey" version' -l 'version' -d 'Show the version.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav pubkey" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'triglav' -n '__triglav_should_offer_completions_for_flags_or_options "triglav help" version' -l 'version' -d 'Show the version.'
