#!/bin/sh
# Runs inside the Debian 13 system that scripts/deb-check boots with systemd-nspawn --boot, as a
# oneshot unit, with the edged .deb installed: proves the unit under real systemd (READY,
# STATUS, edged status, the watchdog, exit 78 without a restart loop, a clean stop, purge).
# Writes PASS/FAIL lines to stdout (the unit sends them to /root/boot-check.log) and powers off.
set -u
failed=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failed=1; }
prop() { systemctl show -p "$1" --value edged; }
# wait_for SECONDS COMMAND...: true once COMMAND succeeds, false after SECONDS
wait_for() {
    n=$(($1 * 2)); shift
    while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 0.5; n=$((n - 1)); done
    return 1
}
state_is() { [ "$(prop ActiveState)" = "$1" ]; }

# The package enables the unit, so it started at boot (on the example config, with the token
# deb-check's demo step left): stop it and start from a known state.
echo "-- at boot: $(systemctl show -p ActiveState -p SubState edged | tr '\n' ' ')"
systemctl stop edged
# The watchdog shortened for the check only (the shipped unit says 30 s); a runtime drop-in.
mkdir -p /run/systemd/system/edged.service.d
printf '[Service]\nWatchdogSec=6s\n' > /run/systemd/system/edged.service.d/check.conf
systemctl daemon-reload

systemctl start mosquitto  # Debian's default: anonymous, loopback only, port 1883
cat > /etc/edged/edged.yaml <<'YAML'
platform:
  org: testorg
  gateway: {type: boot-gw, id: gw-1}
  host: 127.0.0.1
  port: 1883
  tls: false
  token_file: /etc/edged/token
status:
  interval: 5s
devices:
  - id: s-1
    type: sim
    adapter: simulated
    simulated:
      interval: 1s
      values:
        n: {kind: counter, min: 0, max: 100000}
YAML
cp /etc/edged/edged.yaml /root/good.yaml

echo "-- no token yet: exit 78, no restart loop"
rm -f /etc/edged/token
systemctl start edged 2>/dev/null && fail "started without a token"
sleep 12  # more than twice RestartSec=5s
[ "$(prop ExecMainStatus)" = 78 ] && state_is failed && [ "$(prop NRestarts)" = 0 ] \
    && pass "no token: status=78, failed, NRestarts=0 after 12 s" \
    || fail "no token: $(prop ExecMainStatus) $(prop ActiveState) NRestarts=$(prop NRestarts)"
journalctl -u edged -b --no-pager | grep -q "token_file: cannot read the token file" \
    && pass "the journal names the missing token file" || fail "no token message in the journal"

echo "-- token created: READY, STATUS, edged status, events"
printf 'boot-check-token\n' | install -m 0640 -o root -g edged /dev/stdin /etc/edged/token
systemctl reset-failed edged
systemctl start edged && state_is active && pass "started: Type=notify READY reached (active)" \
    || fail "start: $(prop ActiveState) $(prop Result)"
wait_for 20 sh -c '[ -n "$(systemctl show -p StatusText --value edged)" ]' \
    && pass "StatusText: $(prop StatusText)" || fail "StatusText empty"
edged status > /tmp/status.out 2>&1 && pass "edged status answered: $(head -1 /tmp/status.out)" \
    || fail "edged status: $(cat /tmp/status.out)"
timeout 20 edged emulator --org testorg --username a-testorg-check --password-file /etc/edged/token \
    --gateway boot-gw/gw-1 --seconds 6 > /tmp/emulator.out 2>&1
grep -q "s-1" /tmp/emulator.out && pass "the emulator received events of sim/s-1" \
    || fail "no events: $(tail -5 /tmp/emulator.out)"
journalctl -u edged -b -o verbose --no-pager | grep -q "LOGGER=edged" \
    && pass "journald-native entries (LOGGER=, PRIORITY= fields)" \
    || fail "no native journal entries"
[ "$(stat -c '%a %U:%G' /run/edged)" = "750 edged:edged" ] && pass "/run/edged is 0750 edged:edged" \
    || fail "/run/edged: $(stat -c '%a %U:%G' /run/edged)"

echo "-- reload: a good config applied without a restart, a bad one refused and kept"
pid=$(prop MainPID)
sed -i 's/interval: 5s/interval: 7s/' /etc/edged/edged.yaml
systemctl reload edged && [ "$(prop MainPID)" = "$pid" ] && state_is active \
    && pass "systemctl reload: applied, same pid $pid, active" \
    || fail "reload: $(prop ActiveState) pid $(prop MainPID) (was $pid)"
journalctl -u edged -b --no-pager | grep -q "status.interval" \
    && pass "journal: the reload summary names status.interval" \
    || fail "no reload summary in the journal"
printf 'bogus: [\n' >> /etc/edged/edged.yaml
edged reload > /tmp/reload.out 2>&1; rc=$?
[ "$rc" = 1 ] && grep -q "edged.yaml:" /tmp/reload.out && [ "$(prop MainPID)" = "$pid" ] \
    && state_is active && pass "bad config: edged reload exit 1 naming file:line, still running" \
    || fail "bad reload: rc=$rc $(cat /tmp/reload.out) $(prop ActiveState)"
cp /root/good.yaml /etc/edged/edged.yaml

echo "-- wedge: SIGSTOP to the main process"
old=$(prop MainPID)
restarts=$(prop NRestarts)
kill -STOP "$old"
wait_for 40 sh -c "[ \$(systemctl show -p NRestarts --value edged) -gt $restarts ] && [ \$(systemctl show -p ActiveState --value edged) = active ]" \
    && pass "watchdog restarted it: pid $old -> $(prop MainPID), NRestarts=$(prop NRestarts)" \
    || fail "no watchdog restart: $(prop ActiveState) NRestarts=$(prop NRestarts)"
journalctl -u edged -b --no-pager | grep -q "Watchdog timeout" \
    && pass "journal: $(journalctl -u edged -b --no-pager | grep -m1 -o 'Watchdog timeout.*')" \
    || fail "no watchdog timeout in the journal"

echo "-- a bad config at restart: exit 78, no restart loop"
printf 'devices:\n  - id: s-1\n    type: sim\n    adapter: simulated\n    simulated: {interval: soon}\n' >> /etc/edged/edged.yaml
systemctl restart edged 2>/dev/null && fail "restarted with a bad config"
before=$(prop NRestarts)
sleep 12
[ "$(prop ExecMainStatus)" = 78 ] && state_is failed && [ "$(prop NRestarts)" = "$before" ] \
    && pass "bad config: status=78, failed, no restart in 12 s (NRestarts=$before)" \
    || fail "bad config: $(prop ExecMainStatus) $(prop ActiveState) NRestarts=$(prop NRestarts)"

echo "-- clean stop"
cp /root/good.yaml /etc/edged/edged.yaml
systemctl reset-failed edged
systemctl start edged
systemctl stop edged
[ "$(prop Result)" = success ] && [ "$(prop ExecMainStatus)" = 0 ] && state_is inactive \
    && pass "systemctl stop: Result=success, status=0" \
    || fail "stop: $(prop Result) $(prop ExecMainStatus) $(prop ActiveState)"

echo "-- purge"
rm -rf /run/systemd/system/edged.service.d
DEBIAN_FRONTEND=noninteractive apt-get purge -y -q edged > /tmp/purge.log 2>&1 \
    && pass "apt-get purge edged" || fail "purge: $(tail -5 /tmp/purge.log)"
left=$(ls -d /etc/edged /var/lib/edged /usr/lib/systemd/system/edged.service \
    /etc/systemd/system/multi-user.target.wants/edged.service 2>/dev/null)
[ -z "$left" ] && pass "nothing left: /etc/edged, /var/lib/edged, the unit, its enable link" \
    || fail "left after purge: $left"

[ "$failed" = 0 ] && echo "ALL PASSED" || echo "SOME FAILED"
