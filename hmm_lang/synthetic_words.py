"""Word lists for the synthetic TinyStories-style generator, most common first.

The order matters: :mod:`hmm_lang.synthetic` draws from each list with Zipf-like weights
(rank ** -1.1), so the first words are the frequent ones, as in real children's stories.
"""

# name syllables: first x second gives a few hundred distinct, pronounceable names
NAME_HEADS = (
    "Li Be Ma To Sa Ti Mi Jo Lu Ann Ro Da Ke Zo Bo Pe Ella Fi Ha Ru Ni Gra Ja Wi Ka Ol Mo Su Cla "
    "Fre Ste Ta Ame Bri Cha Dei Emi Flo Ge Hu Ivy Lo Nor Ode Pip Qui Rex Sky Ul Vi Wre Yu Za "
    "Ari Bea Cor Dul Eze Fau Gil Hol Ing Jun Kip Lar Mar Nel Oru Pol Ree Sel Tob Uma Vel Wil Xan"
).split()
NAME_TAILS = (
    "ly n x m ra na by mmy ck lla o e sie ddy ri ka la ny son ie tte an ia dy ssa bert ya "
    "lo vin dora mon rick belle fred wen"
).split()

ANIMALS = (
    "dog cat bird bunny bear fox frog duck mouse owl lion puppy kitten pig cow horse sheep squirrel "
    "turtle fish elephant monkey tiger deer goat chicken butterfly bee ant snail giraffe zebra whale "
    "dolphin penguin hen rooster lamb pony rabbit hedgehog raccoon beaver otter seal crab ladybug "
    "spider worm dragon unicorn dinosaur kangaroo panda koala parrot swan goose wolf camel"
).split()

OBJECTS = (
    "ball toy box tree flower book car hat cake kite doll boat train truck apple cookie stick rock "
    "shell bike cup bag blanket drum crayon picture key door window bed chair table lamp leaf "
    "sandwich banana carrot candy bowl spoon shoe sock coat scarf balloon bucket shovel wagon swing "
    "slide robot puzzle block crown ring necklace jar basket map rope feather pebble stone star moon "
    "sun cloud rainbow puddle branch nest egg seed pumpkin pie soup bread cheese milk juice honey "
    "pizza button clock mirror pillow teddy brush paint paper pencil letter gift present treasure "
    "wand sword shield flag tent ladder fence gate bridge wheel whistle bell trumpet guitar piano "
    "violin sled snowman umbrella bottle plate fork knife basketball helmet rocket plane bus tractor "
    "castle tower sandcastle lantern candle wallet coin bench hammer net kettle radio camera"
).split()

PLACES = (
    "park garden house forest beach school store farm pond river lake hill field yard playground "
    "kitchen room backyard zoo jungle meadow cave castle village town city library museum bakery "
    "market mountain island ocean sky barn attic basement shop street road woods valley desert "
    "hospital circus pool treehouse"
).split()

ADJECTIVES = (
    "big little small happy red blue green yellow pretty shiny old new funny kind nice soft brave "
    "tiny huge fluffy bright dark warm cold tall long short fast slow friendly silly sleepy hungry "
    "curious gentle smart strong quiet loud colorful beautiful special shy clever cute wild tasty "
    "sweet sticky wet dry clean dirty purple pink orange white black brown golden silver wooden "
    "round sharp smooth rough heavy light fancy magic strange lovely careful helpful busy lazy "
    "proud polite honest messy noisy spotty striped sparkly gloomy sunny rainy windy snowy cozy "
    "giant delicate fierce grumpy jolly merry playful rare tidy wise young"
).split()

FEELINGS = (
    "happy sad scared excited proud angry surprised worried tired lonely glad upset curious "
    "grateful calm brave nervous jealous thankful amazed sorry confused cheerful hopeful frightened "
    "embarrassed relieved joyful disappointed"
).split()

# base:past, most common first; the -ing and -s forms are made by rule in synthetic.py
VERBS = (
    "play:played run:ran jump:jumped look:looked see:saw go:went find:found help:helped want:wanted "
    "like:liked love:loved walk:walked eat:ate make:made take:took give:gave share:shared "
    "climb:climbed dance:danced sing:sang swim:swam fly:flew build:built draw:drew paint:painted "
    "read:read hug:hugged laugh:laughed smile:smiled cry:cried hide:hid seek:sought catch:caught "
    "throw:threw kick:kicked push:pushed pull:pulled open:opened close:closed carry:carried "
    "bring:brought buy:bought sell:sold clean:cleaned wash:washed cook:cooked bake:baked "
    "plant:planted grow:grew pick:picked explore:explored visit:visited follow:followed chase:chased "
    "touch:touched hold:held drop:dropped break:broke fix:fixed fold:folded cut:cut dig:dug "
    "ride:rode drive:drove sail:sailed skip:skipped hop:hopped roll:rolled spin:spun shake:shook "
    "wave:waved call:called shout:shouted whisper:whispered listen:listened watch:watched "
    "wait:waited rest:rested sleep:slept dream:dreamed wish:wished hope:hoped try:tried learn:learned "
    "teach:taught count:counted think:thought know:knew feel:felt keep:kept lose:lost win:won "
    "miss:missed save:saved protect:protected trust:trusted forgive:forgave thank:thanked "
    "welcome:welcomed invite:invited meet:met leave:left arrive:arrived return:returned "
    "collect:collected gather:gathered decorate:decorated wrap:wrapped fill:filled pour:poured "
    "mix:mixed taste:tasted smell:smelled sniff:sniffed lick:licked bite:bit chew:chewed "
    "splash:splashed slide:slid bounce:bounced float:floated glow:glowed shine:shone sparkle:sparkled"
).split()

FAMILY = "mom dad sister brother grandma grandpa friend teacher aunt uncle cousin neighbor".split()

GREETINGS = (
    "Hi Hello Look Wow Oh Yes No Please Thank you Come Hey Help Stop Wait Yay Oops Sorry Great"
).split()

COLORS_NUMBERS = (
    "one two three four five six seven eight nine ten eleven twelve many some few all every"
).split()

VIRTUES = (
    "kind honest brave patient careful gentle helpful polite generous thankful friendly fair "
    "humble caring"
).split()
