#include "textflag.h"

// Plain stores and loads of a slot's four words: see slot_amd64.go for
// why they are sound and why they are in assembly.

// func storeSlot(s *slot, t int64, addr, lenBatch, opAux uint64)
TEXT ·storeSlot(SB), NOSPLIT, $0-40
	MOVQ	s+0(FP), DI
	MOVQ	t+8(FP), AX
	MOVQ	addr+16(FP), BX
	MOVQ	lenBatch+24(FP), CX
	MOVQ	opAux+32(FP), DX
	MOVQ	AX, 0(DI)
	MOVQ	BX, 8(DI)
	MOVQ	CX, 16(DI)
	MOVQ	DX, 24(DI)
	RET

// func loadSlot(s *slot) (t int64, addr, lenBatch, opAux uint64)
TEXT ·loadSlot(SB), NOSPLIT, $0-40
	MOVQ	s+0(FP), DI
	MOVQ	0(DI), AX
	MOVQ	8(DI), BX
	MOVQ	16(DI), CX
	MOVQ	24(DI), DX
	MOVQ	AX, t+8(FP)
	MOVQ	BX, addr+16(FP)
	MOVQ	CX, lenBatch+24(FP)
	MOVQ	DX, opAux+32(FP)
	RET
