# Never ends on its own: tests/test_vm_hang.py boots it with the guest's own timeout raised
# (-p timeout=...) past the host's, to prove that a hung guest gets diagnosed (ztrace/vm/hang.py).
. "$(dirname "$0")/lib.sh"
log "stall: sleeping until the host gives up"
sleep 100000
