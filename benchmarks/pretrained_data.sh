# Sourced by the pretrained study's runners (study_pretrained.sh, study_pretrained_gpu.sh).
# dataset NAME: sets the caller's `data` (the shared dataset) and `recipe` for cards or micro.
dataset() {
  case $1 in
    cards) data=../shared/datasets/cards; recipe=cards-ssdlite ;;
    micro) data=../shared/datasets/microcontrollers; recipe=microcontrollers-ssdlite ;;
    *) echo "unknown dataset $1 (cards or micro)" >&2; exit 2 ;;
  esac
}
