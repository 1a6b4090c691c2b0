// Command note_interop checks fedlink's signed notes with an implementation
// nobody at fedlink wrote: golang.org/x/mod/sumdb/note, the package Go's
// checksum database uses. Cosignatures (type 0x04) are not in that package,
// so they are verified and made here with the standard library only, from
// the text of c2sp.org/tlog-cosignature, through note's Verifier and Signer
// interfaces.
//
//	note_interop verify < {"note", "log_vkey", "witness_vkeys"}
//	    opens a note fedlink signed; prints {"text", "verified"}.
//	note_interop sign < {"origin", "size", "root", "witness_name", "timestamp"}
//	    makes fresh keys and a checkpoint signed by the log and cosigned by
//	    one witness; prints {"note", "log_vkey", "witness_vkey"}.
//
// Built offline against Debian's golang-golang-x-mod-dev (scripts/go-interop).
package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

const algCosignatureV1 = 0x04

func keyHash(name string, key []byte) uint32 {
	h := sha256.Sum256(append([]byte(name+"\n"), key...))
	return binary.BigEndian.Uint32(h[:4])
}

func cosignedMessage(text []byte, timestamp uint64) []byte {
	return append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", timestamp)), text...)
}

// cosigner is both the Verifier and, with a private key, the Signer of a
// cosignature/v1 key: its signature is timestamp (8 bytes, big endian) ||
// Ed25519 signature over the cosigned message.
type cosigner struct {
	name      string
	public    ed25519.PublicKey
	private   ed25519.PrivateKey
	timestamp uint64
}

func (c *cosigner) Name() string { return c.name }
func (c *cosigner) KeyHash() uint32 {
	return keyHash(c.name, append([]byte{algCosignatureV1}, c.public...))
}

func (c *cosigner) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	return t < 1<<63 && ed25519.Verify(c.public, cosignedMessage(msg, t), sig[8:])
}

func (c *cosigner) Sign(msg []byte) ([]byte, error) {
	out := binary.BigEndian.AppendUint64(nil, c.timestamp)
	return append(out, ed25519.Sign(c.private, cosignedMessage(msg, c.timestamp))...), nil
}

func (c *cosigner) vkey() string {
	return fmt.Sprintf("%s+%08x+%s", c.name, c.KeyHash(),
		base64.StdEncoding.EncodeToString(append([]byte{algCosignatureV1}, c.public...)))
}

func parseCosignerKey(vkey string) (*cosigner, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, errors.New("malformed cosigner key")
	}
	hash, err1 := strconv.ParseUint(parts[1], 16, 32)
	key, err2 := base64.StdEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || len(key) != 1+ed25519.PublicKeySize || key[0] != algCosignatureV1 {
		return nil, errors.New("malformed cosigner key " + vkey)
	}
	c := &cosigner{name: parts[0], public: ed25519.PublicKey(key[1:])}
	if c.KeyHash() != uint32(hash) {
		return nil, errors.New("cosigner key hash does not match " + vkey)
	}
	return c, nil
}

func verify(in map[string]any) (map[string]any, error) {
	log, err := note.NewVerifier(in["log_vkey"].(string))
	if err != nil {
		return nil, err
	}
	verifiers := []note.Verifier{log}
	for _, k := range in["witness_vkeys"].([]any) {
		c, err := parseCosignerKey(k.(string))
		if err != nil {
			return nil, err
		}
		verifiers = append(verifiers, c)
	}
	n, err := note.Open([]byte(in["note"].(string)), note.VerifierList(verifiers...))
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, s := range n.Sigs {
		names = append(names, s.Name)
	}
	return map[string]any{"text": n.Text, "verified": names}, nil
}

func sign(in map[string]any) (map[string]any, error) {
	origin := in["origin"].(string)
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return nil, err
	}
	log, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	public, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	w := &cosigner{in["witness_name"].(string), public, private, uint64(in["timestamp"].(float64))}
	text := fmt.Sprintf("%s\n%d\n%s\n", origin, int64(in["size"].(float64)), in["root"].(string))
	msg, err := note.Sign(&note.Note{Text: text}, log, w)
	if err != nil {
		return nil, err
	}
	return map[string]any{"note": string(msg), "log_vkey": vkey, "witness_vkey": w.vkey()}, nil
}

func main() {
	var in map[string]any
	if len(os.Args) != 2 || json.NewDecoder(os.Stdin).Decode(&in) != nil {
		fmt.Fprintln(os.Stderr, "usage: note_interop verify|sign < request.json")
		os.Exit(2)
	}
	run := map[string]func(map[string]any) (map[string]any, error){"verify": verify, "sign": sign}[os.Args[1]]
	if run == nil {
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
	out, err := run(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "note_interop:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
