package federation

// CheckSequence exposes checkSequence to the fuzz target.
var CheckSequence = checkSequence
