package protect

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/xskgate/xskgate/internal/xdpprog"
)

// Mode is what a rule (or one protection of a rule) does.
type Mode string

const (
	// ModeUnset in a protection inherits the rule's mode.
	ModeUnset Mode = ""
	// ModeMonitor counts what mitigation would do and passes everything.
	ModeMonitor Mode = "monitor"
	// ModeMitigate acts on the verdicts.
	ModeMitigate Mode = "mitigate"
	// ModeDisabled turns the protection off (flows are still tracked).
	ModeDisabled Mode = "disabled"
)

func (m Mode) valid() bool {
	return m == ModeMonitor || m == ModeMitigate || m == ModeDisabled
}

// SynAction is what happens to a SYN above the SYN-flood threshold.
type SynAction string

const (
	// ActionChallenge answers with a cookie SYN-ACK (SYN proxy); the
	// server sees the connection only once the client solved it.
	ActionChallenge SynAction = "challenge"
	// ActionRetransmit drops a tuple's first SYN and admits its
	// retransmission (same tuple and ISN) within the retransmit window.
	ActionRetransmit SynAction = "retransmit"
)

// TableFullAction is what happens to a new flow the full flow table cannot
// track (every entry it may evict is an assured, open flow).
type TableFullAction string

const (
	// TableFullChallenge (the default) answers the SYN with a cookie
	// SYN-ACK, as a SYN over threshold: a flood that filled the table
	// reaches no server, and a client that solves the cookie is proxied
	// once the table has room (flows close, expire or are evicted as
	// unassured). A non-SYN that could not be picked up is out of state.
	TableFullChallenge TableFullAction = "challenge"
	// TableFullPass forwards the SYN untracked (fail open); its flow's
	// later segments are judged as not_found, under the out-of-state rule.
	TableFullPass TableFullAction = "pass"
	// TableFullDrop drops the SYN; a non-SYN that could not be picked up
	// is out of state.
	TableFullDrop TableFullAction = "drop"
)

// Config is the protection section of the daemon's configuration file
// (the `protection:` mapping). The zero value is a disabled stage.
//
//	protection:
//	  enabled: true
//	  prefixes: [198.18.0.0/24, 2001:2::/64]
//	  allowlist: [198.19.113.0/24]
//	  blocklist: [198.19.2.0/24]
//	  syn_proxy: {mss: 1460, wscale: 7, sack_perm: true, window: 0, challenge_rate: 100000, challenge_burst: 10000}
//	  log: {rate: 10}
//	  on_table_full: challenge     # challenge | pass | drop
//	  rules:
//	    - name: web
//	      scope: 198.18.0.0/24
//	      mode: mitigate
//	      out_of_state: {rate: 500, burst: 2500}
//	      syn_flood: {rate: 1000, burst: 5000, per_source_rate: 50, per_source_burst: 100, action: challenge}
type Config struct {
	// Enabled is the global switch. Off, the stage still parses and
	// tracks protected TCP (so switching it on drops no flow, and SYN-proxied
	// connections keep their sequence translation) but never drops,
	// bounces or challenges anything.
	Enabled bool `yaml:"enabled"`
	// Prefixes are the protected destinations. TCP to any other address
	// is forwarded untouched and untracked.
	Prefixes []netip.Prefix `yaml:"prefixes"`
	// Allowlist holds source prefixes that skip every rule (their flows
	// are still tracked). Sources are spoofable: this is an operational
	// escape hatch, not a security control.
	Allowlist []netip.Prefix `yaml:"allowlist"`
	// Blocklist holds source prefixes whose TCP is dropped toward
	// protected prefixes. It wins over the allowlist.
	Blocklist []netip.Prefix `yaml:"blocklist"`
	// Rules are scoped by destination prefix; the most specific scope
	// containing the destination applies. No rule: protection is off for
	// that destination (tracked, never dropped), as in ATP.
	Rules    []Rule         `yaml:"rules"`
	SynProxy SynProxyConfig `yaml:"syn_proxy"`
	Log      LogConfig      `yaml:"log"`
	// FirstLine is the in-kernel first line the rules feed (on by
	// default when protection is enabled and the gate has one).
	FirstLine FirstLineConfig `yaml:"first_line"`
	// FastPath offloads established flows to the kernel (fastpath.go).
	FastPath FastPathConfig `yaml:"fast_path"`
	// OnTableFull is what happens to a new flow when the flow table is
	// full (default challenge). It acts where the destination's rule
	// acts: its syn_flood mode for SYNs (monitor counts, disabled or no
	// rule passes), its out_of_state rule for other segments.
	OnTableFull TableFullAction `yaml:"on_table_full"`
}

// Rule is one destination scope's protections.
type Rule struct {
	// Name labels the rule's metrics and log lines; default: the scope.
	Name       string         `yaml:"name"`
	Scope      netip.Prefix   `yaml:"scope"`
	Mode       Mode           `yaml:"mode"`
	OutOfState OutOfStateRule `yaml:"out_of_state"`
	SynFlood   SynFloodRule   `yaml:"syn_flood"`
}

// OutOfStateRule drops inbound segments that do not fit a tracked flow
// (ACK/RST/FIN floods), but only while their rate toward the scope exceeds
// Rate packets per second with Burst packets of tolerance: routing is
// noisy, and a few stray segments are not an attack.
type OutOfStateRule struct {
	Mode Mode `yaml:"mode"` // empty: the rule's mode
	// Rate in packets per second; 0 means always over threshold.
	Rate uint32 `yaml:"rate"`
	// Burst in packets; 0 defaults to Rate.
	Burst uint32 `yaml:"burst"`
}

// SynFloodRule acts on inbound SYNs above Rate/Burst toward the scope, or
// above PerSourceRate/PerSourceBurst from one source.
type SynFloodRule struct {
	Mode           Mode      `yaml:"mode"`
	Rate           uint32    `yaml:"rate"`  // pps toward the scope; 0: always over
	Burst          uint32    `yaml:"burst"` // 0: Rate
	PerSourceRate  uint32    `yaml:"per_source_rate"`
	PerSourceBurst uint32    `yaml:"per_source_burst"`
	Action         SynAction `yaml:"action"` // default challenge
	// RetransmitMin and RetransmitWindow bound the age of the dropped
	// first SYN when its retransmission arrives (defaults 500ms and 3s:
	// stacks retry after an initial RTO of about 1 s).
	RetransmitMin    time.Duration `yaml:"retransmit_min"`
	RetransmitWindow time.Duration `yaml:"retransmit_window"`
}

// SynProxyConfig shapes the cookie SYN-ACK. WScale must match what the
// protected servers use: the client learns the window scale from the
// proxy, not from the server, and the proxy does not rescale windows.
type SynProxyConfig struct {
	MSS      uint16 `yaml:"mss"`       // advertised MSS for IPv4 (IPv6: MSS-20); default 1460
	WScale   *uint8 `yaml:"wscale"`    // default 7 (Linux with default tcp_rmem)
	SACKPerm *bool  `yaml:"sack_perm"` // default true
	// Window is what the cookie SYN-ACK advertises. 0 (the default, as
	// Linux SYNPROXY): the client sends nothing until the proxy's window
	// update, sent once the server completed its handshake. A non-zero
	// window lets a client that speaks first send data the server cannot
	// take yet: it is dropped and the client retransmits it.
	Window uint16 `yaml:"window"`
	// ChallengeRate/Burst bound cookie SYN-ACKs per second over all
	// scopes, so the gate cannot be used as a reflector (default
	// 200000/20000).
	ChallengeRate  uint32 `yaml:"challenge_rate"`
	ChallengeBurst uint32 `yaml:"challenge_burst"`
	// PassedTTL is how long a source that passed a challenge (sent a
	// valid cookie ACK, so it receives what is sent to it) is answered
	// outside the challenge budget, within PassedRate/PassedBurst
	// SYN-ACKs per second of its own: a flood above the budget then
	// cannot crowd out clients that already proved themselves. Default
	// 10m; 0 turns the exemption off.
	PassedTTL   *time.Duration `yaml:"passed_ttl"`
	PassedRate  uint32         `yaml:"passed_rate"`  // default 100
	PassedBurst uint32         `yaml:"passed_burst"` // default 2 x rate
	// PassedTotalRate/Burst bound the SYN-ACKs all passed sources get
	// outside the budget together (default: challenge_rate and
	// challenge_burst, so passed sources at most double what the gate
	// can reflect).
	PassedTotalRate  uint32 `yaml:"passed_total_rate"`
	PassedTotalBurst uint32 `yaml:"passed_total_burst"`
}

// LogConfig bounds the sampled drop log.
type LogConfig struct {
	Rate uint32 `yaml:"rate"` // drop lines per second; default 10; 0 after defaults: see Quiet
	// Quiet turns the drop log off.
	Quiet bool `yaml:"quiet"`
}

const (
	defaultMSS            = 1460
	defaultWScale         = 7
	defaultWindow         = 0
	defaultChallengeRate  = 200000
	defaultChallengeBurst = 20000
	defaultPassedTTL      = 10 * time.Minute
	defaultPassedRate     = 100
	maxPassedTTL          = 24 * time.Hour
	maxPassedRate         = 1000000 // per source; far above any real client
	defaultLogRate        = 10
	defaultRetransmitMin  = 500 * time.Millisecond
	defaultRetransmitWin  = 3 * time.Second
	maxRules              = 4096
)

// Validate checks cfg and reports the first problem, naming the field as
// it appears in the configuration file.
func (cfg *Config) Validate() error {
	_, err := compile(cfg)
	return err
}

func checkPrefixes(field string, ps []netip.Prefix) error {
	for i, p := range ps {
		if !p.IsValid() {
			return fmt.Errorf("protection.%s[%d]: invalid prefix", field, i)
		}
	}
	return nil
}

func (m Mode) resolve(parent Mode, field string) (Mode, error) {
	if m == ModeUnset {
		return parent, nil
	}
	if !m.valid() {
		return "", fmt.Errorf("%s: unknown mode %q (want monitor, mitigate or disabled)", field, string(m))
	}
	return m, nil
}

// compile validates cfg and builds the immutable rule set the data path
// reads.
func compile(cfg *Config) (*ruleset, error) {
	if cfg == nil {
		return nil, errors.New("protection: nil config")
	}
	if cfg.Enabled && len(cfg.Prefixes) == 0 {
		return nil, errors.New("protection.prefixes: enabled but no protected prefix (nothing would be protected)")
	}
	for _, f := range []struct {
		name string
		ps   []netip.Prefix
	}{{"prefixes", cfg.Prefixes}, {"allowlist", cfg.Allowlist}, {"blocklist", cfg.Blocklist}} {
		if err := checkPrefixes(f.name, f.ps); err != nil {
			return nil, err
		}
	}
	if len(cfg.Rules) > maxRules {
		return nil, fmt.Errorf("protection.rules: %d rules, at most %d", len(cfg.Rules), maxRules)
	}
	rs := &ruleset{
		enabled:   cfg.Enabled,
		prefixes:  masked(cfg.Prefixes),
		allowlist: masked(cfg.Allowlist),
		blocklist: masked(cfg.Blocklist),
	}
	sp := cfg.SynProxy
	rs.proxy = proxyParams{mss: defaultMSS, wscale: defaultWScale, sack: true, window: defaultWindow}
	if sp.MSS != 0 {
		if sp.MSS < 536 || sp.MSS > 9000 {
			return nil, fmt.Errorf("protection.syn_proxy.mss: %d out of range [536, 9000]", sp.MSS)
		}
		rs.proxy.mss = sp.MSS
	}
	if sp.WScale != nil {
		if *sp.WScale > 14 {
			return nil, fmt.Errorf("protection.syn_proxy.wscale: %d out of range [0, 14]", *sp.WScale)
		}
		rs.proxy.wscale = *sp.WScale
	}
	if sp.SACKPerm != nil {
		rs.proxy.sack = *sp.SACKPerm
	}
	if sp.Window != 0 {
		rs.proxy.window = sp.Window
	}
	cr, cb := sp.ChallengeRate, sp.ChallengeBurst
	if cr == 0 {
		cr = defaultChallengeRate
	}
	if cb == 0 {
		cb = max(cr/10, 1)
		if sp.ChallengeRate == 0 {
			cb = defaultChallengeBurst
		}
	}
	switch cfg.OnTableFull {
	case "", TableFullChallenge:
		rs.onFull = TableFullChallenge
	case TableFullPass, TableFullDrop:
		rs.onFull = cfg.OnTableFull
	default:
		return nil, fmt.Errorf("protection.on_table_full: unknown action %q (want challenge, pass or drop)", string(cfg.OnTableFull))
	}
	rs.challenge.init(cr, cb)
	rs.challengeRate, rs.challengeBurst = cr, cb
	rs.passedTTL = defaultPassedTTL
	if sp.PassedTTL != nil {
		if d := *sp.PassedTTL; d != 0 && (d < time.Second || d > maxPassedTTL) {
			return nil, fmt.Errorf("protection.syn_proxy.passed_ttl: %s is out of range [1s, %s] (0 turns the exemption off)", d, maxPassedTTL)
		}
		rs.passedTTL = *sp.PassedTTL
	}
	if sp.PassedRate > maxPassedRate || sp.PassedBurst > maxPassedRate {
		return nil, fmt.Errorf("protection.syn_proxy.passed_rate/passed_burst: %d/%d: at most %d", sp.PassedRate, sp.PassedBurst, maxPassedRate)
	}
	rs.passedRate, rs.passedBurst = sp.PassedRate, sp.PassedBurst
	if rs.passedRate == 0 {
		rs.passedRate = defaultPassedRate
	}
	if rs.passedBurst == 0 {
		rs.passedBurst = 2 * rs.passedRate
	}
	rs.passed = rateParams(rs.passedRate, rs.passedBurst)
	tr, tb := sp.PassedTotalRate, sp.PassedTotalBurst
	if tr == 0 {
		tr, tb = cr, cb
	} else if tb == 0 {
		tb = max(tr/10, 1)
	}
	rs.passedAll.init(tr, tb)
	if n := cfg.FastPath.Flows; n < 0 || n > 1<<24 {
		return nil, fmt.Errorf("protection.fast_path.flows: %d out of range [0, %d] (0: %d)", n, 1<<24, xdpprog.DefaultFastFlows)
	}
	fl := cfg.FirstLine
	if fl.Mode != ModeUnset && !fl.Mode.valid() {
		return nil, fmt.Errorf("protection.first_line.mode: %q: use mitigate, monitor or disabled", fl.Mode)
	}
	if fl.Penalty < 0 || fl.Hold < 0 {
		return nil, fmt.Errorf("protection.first_line: penalty and hold must not be negative")
	}
	if fl.Penalty == 0 {
		fl.Penalty = defaultPenalty
	}
	if fl.Hold == 0 {
		fl.Hold = defaultHold
	}
	if fl.UserSpaceRate == 0 {
		fl.UserSpaceRate = defaultUserSpaceRate
	}
	rs.userSpace = rateParams(fl.UserSpaceRate, max(fl.UserSpaceRate/10, 1))
	rs.firstLine = fl
	lr := cfg.Log.Rate
	if lr == 0 {
		lr = defaultLogRate
	}
	rs.logQuiet = cfg.Log.Quiet
	rs.logLimit.init(lr, lr)

	names := map[string]int{}
	for i := range cfg.Rules {
		r := &cfg.Rules[i]
		where := fmt.Sprintf("protection.rules[%d]", i)
		if !r.Scope.IsValid() {
			return nil, fmt.Errorf("%s.scope: missing or invalid prefix", where)
		}
		scope := r.Scope.Masked()
		if !slices.ContainsFunc(rs.prefixes, scope.Overlaps) {
			return nil, fmt.Errorf("%s.scope: %s overlaps no protected prefix (the rule would never apply)", where, scope)
		}
		name := r.Name
		if name == "" {
			name = scope.String()
		}
		if j, dup := names[name]; dup {
			return nil, fmt.Errorf("%s.name: %q already names rules[%d]", where, name, j)
		}
		names[name] = i
		if !r.Mode.valid() {
			return nil, fmt.Errorf("%s.mode: unknown or missing mode %q (want monitor, mitigate or disabled)", where, string(r.Mode))
		}
		c := &rule{name: name, scope: scope, idx: i}
		var err error
		if c.oosMode, err = r.OutOfState.Mode.resolve(r.Mode, where+".out_of_state.mode"); err != nil {
			return nil, err
		}
		if c.synMode, err = r.SynFlood.Mode.resolve(r.Mode, where+".syn_flood.mode"); err != nil {
			return nil, err
		}
		c.oos.init(r.OutOfState.Rate, orRate(r.OutOfState.Burst, r.OutOfState.Rate))
		sf := &r.SynFlood
		c.syn.init(sf.Rate, orRate(sf.Burst, sf.Rate))
		if sf.PerSourceBurst != 0 && sf.PerSourceRate == 0 {
			return nil, fmt.Errorf("%s.syn_flood.per_source_burst: set without per_source_rate", where)
		}
		if sf.PerSourceRate != 0 {
			c.perSource = true
			c.srcRate = rateParams(sf.PerSourceRate, orRate(sf.PerSourceBurst, sf.PerSourceRate))
		}
		switch sf.Action {
		case "", ActionChallenge:
			c.action = ActionChallenge
		case ActionRetransmit:
			c.action = ActionRetransmit
		default:
			return nil, fmt.Errorf("%s.syn_flood.action: unknown action %q (want challenge or retransmit)", where, string(sf.Action))
		}
		c.rtMin, c.rtMax = sf.RetransmitMin, sf.RetransmitWindow
		if c.rtMin == 0 {
			c.rtMin = defaultRetransmitMin
		}
		if c.rtMax == 0 {
			c.rtMax = defaultRetransmitWin
		}
		if c.rtMin < 0 || c.rtMax <= c.rtMin || c.rtMax > time.Minute {
			return nil, fmt.Errorf("%s.syn_flood: retransmit window [%s, %s] invalid (want 0 <= retransmit_min < retransmit_window <= 1m)",
				where, c.rtMin, c.rtMax)
		}
		rs.rtMaxAll = max(rs.rtMaxAll, c.rtMax)
		rs.rules = append(rs.rules, c)
	}
	// Most specific first, so the first match wins; ties keep file order.
	slices.SortStableFunc(rs.rules, func(a, b *rule) int { return b.scope.Bits() - a.scope.Bits() })
	rs.tries.build(rs)
	return rs, nil
}

func orRate(burst, rate uint32) uint32 {
	if burst == 0 {
		return max(rate, 1)
	}
	return burst
}

func masked(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = p.Masked()
	}
	return out
}
