import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, seal } from '../../src/secrets/transit/ciphers.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// Published AEAD vectors through the engine's own framing (nonce ‖ ciphertext ‖ tag): if the framing, the
// algorithm or the AAD handling were wrong, these would not open.
describe('transit AEAD framing against published vectors', () => {
  it('RFC 8439 §2.8.2 ChaCha20-Poly1305 AEAD vector opens and yields the sunscreen text', () => {
    const key = hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
    const nonce = hex('070000004041424344454647');
    const aad = hex('50515253c0c1c2c3c4c5c6c7');
    const ciphertext = hex(`d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b
      1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116`);
    const tag = hex('1ae10b594f09e26a7e902ecbd0600691');
    const plaintext = open('chacha20-poly1305', key, Buffer.concat([nonce, ciphertext, tag]), aad);
    assert.equal(plaintext.toString(), "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.");
    assert.throws(() => open('chacha20-poly1305', key, Buffer.concat([nonce, ciphertext, tag])), /^BadRequestError: cipher: message authentication failed$/, 'without the AAD');
  });

  it('GCM specification test case 16 (AES-256, 96-bit IV, AAD) opens', () => {
    const key = hex('feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308');
    const iv = hex('cafebabefacedbaddecaf888');
    const aad = hex('feedfacedeadbeeffeedfacedeadbeefabaddad2');
    const ciphertext = hex('522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662');
    const tag = hex('76fc6ece0f4e1768cddf8853bb2d551b');
    const plaintext = open('aes256-gcm96', key, Buffer.concat([iv, ciphertext, tag]), aad);
    assert.equal(plaintext.toString('hex'), 'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39');
  });

  it('every single-bit flip of a sealed value fails to open', () => {
    for (const type of ['aes256-gcm96', 'chacha20-poly1305'] as const) {
      const key = randomBytes(32);
      const sealed = seal(type, key, Buffer.from('sixteen byte msg'));
      assert.equal(open(type, key, sealed).toString(), 'sixteen byte msg');
      for (let i = 0; i < sealed.length; i++) {
        const bad = Buffer.from(sealed);
        bad[i]! ^= 1 << (i % 8);
        assert.throws(() => open(type, key, bad), /cipher: message authentication failed/, `${type}: byte ${i} flipped`);
      }
      assert.throws(() => open(type, randomBytes(32), sealed), /cipher: message authentication failed/, `${type}: another key`);
      assert.throws(() => open(type, key, sealed.subarray(0, 27)), /invalid ciphertext length/);
    }
  });
});
